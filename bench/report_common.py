"""What the bench/report_*.py scripts share: running gnuplot and rewriting their own section of
docs/benchmarks.md (between <!-- NAME:begin --> and <!-- NAME:end -->, appended when missing)."""
import os
import subprocess


def plot(name, script):
    """Runs a gnuplot script; a missing or failing gnuplot costs the plot, not the report."""
    try:
        subprocess.run(["gnuplot"], input=script.encode(), check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"{name}: gnuplot failed ({e}); no plot")


def replace_section(doc, name, lines):
    """Puts lines (the first and last being the section's begin and end markers) into doc."""
    first, last = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = open(doc).read() if os.path.exists(doc) else "# Benchmarks\n"
    begin, end = text.find(first), text.find(last)
    section = "\n".join(lines)
    if begin >= 0 and end >= 0:
        text = text[:begin] + section + text[end + len(last):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    with open(doc, "w") as f:
        f.write(text)
