#include <kvmm/log.h>

#include <criterion/criterion.h>
#include <criterion/redirect.h>

Test(log, level_filters, .timeout = 5, .init = cr_redirect_stderr)
{
	log_set_level(LOG_WARN);
	cr_expect(log_enabled(LOG_ERROR));
	cr_expect(log_enabled(LOG_WARN));
	cr_expect(!log_enabled(LOG_INFO));
	log_info("hidden %d", 1);
	log_warn("shown %d", 2);
	fflush(stderr);
	cr_expect_stderr_neq_str("");
}

Test(log, one_prefixed_line, .timeout = 5, .init = cr_redirect_stderr)
{
	char buf[256] = "";
	FILE *err = cr_get_redirected_stderr();

	log_set_level(LOG_INFO);
	log_error("disk %s is full", "swap0");
	fflush(stderr);
	cr_assert_not_null(fgets(buf, sizeof(buf), err));
	cr_expect(strstr(buf, "kvmm[") == buf, "no prefix: %s", buf);
	cr_expect_not_null(strstr(buf, " error: disk swap0 is full\n"), "%s", buf);
}
