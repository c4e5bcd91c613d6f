/* kmain: the CPL0 part (boot_params, page tables, IDT/TSS), then guest_main at CPL3: banner,
 * command line, the workload steps, exit. */
#include "guest.h"

static void print_banner(void)
{
	print("KVMM guest=test event=banner version=1 mem_mb=%lu cmdline=\"", mm_ram_bytes() >> 20);
	for (const char *s = boot_cmdline; *s; s++)
		console_putc(*s == '"' ? '\'' : *s == '\n' ? ' ' : *s);
	print("\"\n");
	for (unsigned i = 0; i < boot_e820_count; i++)
		print("KVMM e820 addr=0x%lx size=0x%lx type=%u\n", boot_e820[i].addr, boot_e820[i].size,
		      boot_e820[i].type);
}

static int run_step(const struct config *cfg, const struct step *st)
{
	switch (st->kind) {
	case STEP_FILL:
		return workload_fill(cfg);
	case STEP_VERIFY:
		return workload_verify(cfg);
	case STEP_IDLE:
		return workload_idle(cfg, st->arg);
	case STEP_WSS:
		return workload_wss(cfg);
	case STEP_BALLOON:
		return balloon_step(cfg, st->arg);
	case STEP_REWRITE:
		return workload_rewrite(cfg, st->arg);
	case STEP_CHURN:
		return workload_churn(cfg, st->arg);
	}
	return EXIT_INTERNAL;
}

static void guest_main(void)
{
	static struct config cfg;
	int status = EXIT_OK;

	if (cmdline_parse(boot_cmdline, &cfg))
		guest_exit(EXIT_USAGE);
	if (cfg.nr_steps && (status = workload_prepare(&cfg)))
		guest_exit(status);
	for (unsigned i = 0; i < cfg.nr_steps; i++) {
		int r = run_step(&cfg, &cfg.steps[i]);
		if (r > EXIT_MISMATCH)
			guest_exit(r);
		if (r)
			status = r;
	}
	guest_exit(status);
}

void kmain(const void *boot_params)
{
	console_init();
	if (boot_import(boot_params)) {
		print("KVMM error=no-memory-map\n");
		guest_exit(EXIT_INTERNAL);
	}
	print_banner();
	if (mm_init()) {
		print("KVMM error=page-tables\n");
		guest_exit(EXIT_INTERNAL);
	}
	cpu_init();
	cpu_enter_user(guest_main);
}
