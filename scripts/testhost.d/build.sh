# Builders for the test host's artifacts; sourced by scripts/testhost.
#
# Everything comes from Debian's packages (apt-get download, debootstrap) and is cached under
# $TH_CACHE, one directory or file per artifact, named by a hash of exactly the inputs that make it:
# the package versions, the builder function's own text and the files it copies in. Change any of them
# and that artifact (and only it) is rebuilt on the next run; unused old artifacts are pruned.

TH_KERNEL_META=linux-image-6.12-cloud-amd64
TH_SUITE=bookworm

# What tests need inside the test host: QEMU for side-by-side runs, python3, debugging tools, the
# runtime libraries kvmm and its test binaries link against, and libvirt's daemon with its QEMU
# driver and virsh (test_libvirt.py, bench/libvirt.sh; set up per run by tests/support/libvirt-setup.sh).
TH_ROOTFS_PKGS=(qemu-system-x86 busybox kmod procps python3 iproute2 strace gdb-minimal e2fsprogs
	libxxhash0 liblz4-1 libjansson4 libinih1 libxml2 libseccomp2 libcriterion3 libasan8 libubsan1
	libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients)

# Loaded by the test host's /init, in this order (kvm needs irqbypass). Busybox insmod cannot read
# the .ko.xz files Debian ships, so they are stored decompressed in the initramfs.
TH_HOST_MODULES=(virt/lib/irqbypass arch/x86/kvm/kvm arch/x86/kvm/kvm-amd drivers/block/virtio_blk)

# Modules the Linux guest's /init loads when present (guest-init): the ACPI power button and the
# input event device busybox acpid reads it from, and the virtio balloon driver (virtio_pci itself
# is built in). Stored decompressed, like the test host's.
TH_GUEST_MODULES=(drivers/acpi/button drivers/input/evdev drivers/virtio/virtio_balloon)

th_key() {
	printf '%s\n' "$@" | sha256sum | cut -c1-16
}

# The newest Debian 6.12 cloud kernel, e.g. 6.12.117+deb12-cloud-amd64.
th_kernel_version() {
	local pkg
	pkg=$(apt-cache depends "$TH_KERNEL_META" 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
	if [ -z "$pkg" ]; then
		th_as_root apt-get update -qq >&2 || th_die "apt-get update failed"
		pkg=$(apt-cache depends "$TH_KERNEL_META" 2>/dev/null |
			awk '/Depends: linux-image-/ {print $2; exit}')
	fi
	[ -n "$pkg" ] || th_die "apt cannot resolve $TH_KERNEL_META"
	echo "${pkg#linux-image-}"
}

# The Debian mirror apt is already configured with, for debootstrap.
th_debian_mirror() {
	apt-cache policy | awk -v s="$TH_SUITE/main" '$3 == s && $4 == "amd64" {print $2; exit}'
}

th_tmpdir() {
	mkdir -p "$TH_CACHE"
	mktemp -d "$TH_CACHE/.tmp-$1.XXXXXX"
}

# kernel-<version>/: vmlinuz, config and lib/modules/<version> from the unsigned image package.
th_build_kernel() {
	local kver=$1 out=$2 tmp
	tmp=$(th_tmpdir kernel)
	(cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "linux-image-$kver-unsigned") \
		>"$tmp/download.log" 2>&1 || { cat "$tmp/download.log" >&2; th_die "cannot download linux-image-$kver-unsigned"; }
	dpkg-deb -x "$tmp"/linux-image-*.deb "$tmp/x"
	mkdir -p "$tmp/out/lib/modules"
	mv "$tmp/x/boot/vmlinuz-$kver" "$tmp/out/vmlinuz"
	mv "$tmp/x/boot/config-$kver" "$tmp/out/config"
	mv "$tmp/x/lib/modules/$kver" "$tmp/out/lib/modules/"
	mv "$tmp/out" "$out"
	rm -rf "$tmp"
}

# A gzip'd newc cpio of a directory, owned by root inside.
th_cpio() {
	(cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -6 >"$2"
}

th_busybox() {
	local bb=/bin/busybox
	ldd "$bb" >/dev/null 2>&1 && th_die "$bb is not static: install busybox-static (scripts/deps.sh)"
	echo "$bb"
}

# The test host's initramfs: static busybox, the kvm and virtio_blk modules, and /init.
th_build_hostinit() {
	local kdir=$1 kver=$2 out=$3 tmp m
	tmp=$(th_tmpdir hostinit)
	mkdir -p "$tmp"/{bin,dev,proc,sys,newroot,lib/modules,kvmm}
	cp "$(th_busybox)" "$tmp/bin/busybox"
	for m in "${TH_HOST_MODULES[@]}"; do
		xz -dc "$kdir/lib/modules/$kver/kernel/$m.ko.xz" >"$tmp/lib/modules/${m##*/}.ko"
	done
	install -m 0755 "$TH_DIR/init" "$tmp/init"
	th_cpio "$tmp" "$out.part"
	mv "$out.part" "$out"
	rm -rf "$tmp"
}

# The Linux guest that runs *inside* the test host (under QEMU now, kvmm later): the same Debian cloud
# kernel and a busybox initramfs whose /init is scripts/testhost.d/guest-init, with TH_GUEST_MODULES.
th_build_guest() {
	local kdir=$1 out=$2 tmp m kver
	kver=$(basename "$(ls -d "$kdir"/lib/modules/*/ | head -n 1)")
	tmp=$(th_tmpdir guest)
	mkdir -p "$tmp/out" "$tmp/root"/{bin,dev,proc,sys,lib/modules}
	cp "$(th_busybox)" "$tmp/root/bin/busybox"
	for m in "${TH_GUEST_MODULES[@]}"; do
		xz -dc "$kdir/lib/modules/$kver/kernel/$m.ko.xz" >"$tmp/root/lib/modules/${m##*/}.ko" ||
			th_die "guest module $m missing in $kdir"
	done
	install -m 0755 "$TH_DIR/guest-init" "$tmp/root/init"
	th_cpio "$tmp/root" "$tmp/out/initramfs.cpio.gz"
	cp "$kdir/vmlinuz" "$tmp/out/vmlinuz"
	mv "$tmp/out" "$out"
	rm -rf "$tmp"
}

# The test host's root file system: Debian minbase plus TH_ROOTFS_PKGS and the kernel's modules, as
# an ext4 image. QEMU opens it with snapshot=on, so every boot starts from the same clean image.
th_build_rootfs() {
	local kdir=$1 kver=$2 out=$3 tmp root mirror size_mb
	mirror=$(th_debian_mirror)
	[ -n "$mirror" ] || th_die "no $TH_SUITE/main amd64 source in apt's configuration"
	tmp=$(th_tmpdir rootfs)
	root=$tmp/root
	th_log "debootstrap $TH_SUITE (minbase + ${#TH_ROOTFS_PKGS[@]} packages), about 2 minutes"
	if ! th_as_root debootstrap --variant=minbase --include="$(IFS=,; echo "${TH_ROOTFS_PKGS[*]}")" \
		"$TH_SUITE" "$root" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
		tail -n 20 "$tmp/debootstrap.log" >&2
		th_as_root tail -n 30 "$root/debootstrap/debootstrap.log" >&2 2>/dev/null || true
		th_as_root rm -rf "$tmp"
		th_die "debootstrap failed (log above)"
	fi
	th_as_root mkdir -p "$root/lib/modules"
	th_as_root cp -a "$kdir/lib/modules/$kver" "$root/lib/modules/"
	th_as_root depmod -b "$root" "$kver"
	th_as_root sh -c "rm -rf '$root'/var/cache/apt/archives/*.deb '$root'/var/lib/apt/lists/* &&
		echo kvmm-testhost >'$root/etc/hostname'"
	size_mb=$(( $(th_as_root du -sm "$root" | cut -f1) * 3 / 2 + 256 ))
	th_as_root mke2fs -q -t ext4 -L kvmm-testhost -d "$root" "$tmp/rootfs.ext4" "${size_mb}M"
	th_as_root chmod 0644 "$tmp/rootfs.ext4"
	mv "$tmp/rootfs.ext4" "$out"
	th_as_root rm -rf "$tmp"
}

# Builds what is missing and sets TH_KVER, TH_KERNEL_DIR, TH_HOSTINIT, TH_ROOTFS, TH_GUEST_DIR.
th_ensure() {
	local keep
	mkdir -p "$TH_CACHE"
	TH_KVER=$(th_kernel_version)
	TH_KERNEL_DIR=$TH_CACHE/kernel-$TH_KVER
	TH_HOSTINIT=$TH_CACHE/hostinit-$(th_key "$TH_KVER" "$(declare -f th_build_hostinit th_cpio)" \
		"${TH_HOST_MODULES[*]}" "$(cat "$TH_DIR/init")" "$(busybox 2>&1 | head -1)").cpio.gz
	TH_GUEST_DIR=$TH_CACHE/guest-$(th_key "$TH_KVER" "$(declare -f th_build_guest th_cpio)" \
		"${TH_GUEST_MODULES[*]}" "$(cat "$TH_DIR/guest-init")" "$(busybox 2>&1 | head -1)")
	TH_ROOTFS=$TH_CACHE/rootfs-$(th_key "$TH_KVER" "$TH_SUITE" "${TH_ROOTFS_PKGS[*]}" \
		"$(declare -f th_build_rootfs)").ext4

	if [ ! -d "$TH_KERNEL_DIR" ]; then
		th_log "fetching Debian kernel $TH_KVER"
		th_build_kernel "$TH_KVER" "$TH_KERNEL_DIR"
	fi
	[ -f "$TH_HOSTINIT" ] || { th_log "building test host initramfs"; th_build_hostinit "$TH_KERNEL_DIR" "$TH_KVER" "$TH_HOSTINIT"; }
	[ -d "$TH_GUEST_DIR" ] || { th_log "building Linux guest"; th_build_guest "$TH_KERNEL_DIR" "$TH_GUEST_DIR"; }
	[ -f "$TH_ROOTFS" ] || th_build_rootfs "$TH_KERNEL_DIR" "$TH_KVER" "$TH_ROOTFS"

	# Prune artifacts of older inputs (and temporaries of interrupted builds) once nothing has used
	# them for TH_PRUNE_DAYS: another checkout (a git worktree, a branch) may use other inputs at
	# the same time, and deleting its guest under a running test host breaks it. What this run uses
	# is touched. peers/ holds VMMs built by hand from public source for side-by-side benchmarks
	# (bench/README.md); it is kept.
	keep=" ${TH_KERNEL_DIR##*/} ${TH_HOSTINIT##*/} ${TH_GUEST_DIR##*/} ${TH_ROOTFS##*/} peers "
	for f in "$TH_CACHE"/* "$TH_CACHE"/.tmp-*; do
		[ -e "$f" ] || continue
		case "$keep" in *" ${f##*/} "*) touch -c "$f"; continue ;; esac
		case "${f##*/}" in kvm-probe-*) continue ;; esac
		[ -n "$(find "$f" -maxdepth 0 -mtime +"${TH_PRUNE_DAYS:-2}")" ] || continue
		th_as_root rm -rf "$f"
	done
}
