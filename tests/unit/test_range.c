/* test_range.c — row ranges of splits ("20%:", ":20%", "0:1000", ...). */
#include <string.h>
#include "config.h"
#include "testutil.h"

static void expect(const char *text, long n, long b, long e) {
    long begin = -1, end = -1;
    int rc = config_range_resolve(text, n, &begin, &end);
    if (rc != YT_OK) fail_msg("'%s' of %ld rows: %s", text, n, yt_errmsg());
    if (begin != b || end != e)
        fail_msg("'%s' of %ld rows: [%ld, %ld), want [%ld, %ld)", text, n, begin, end, b, e);
}

static void test_whole_and_absolute(void **state) {
    (void)state;
    expect("", 100, 0, 100);
    expect("  ", 100, 0, 100);
    expect(":", 100, 0, 100);
    expect("0:1000", 5000, 0, 1000);
    expect("1000:", 5000, 1000, 5000);
    expect(":10", 5000, 0, 10);
    expect("10", 5000, 0, 10);
    expect("-100:", 5000, 4900, 5000);
    expect("0:99999", 5000, 0, 5000); /* clamped */
    expect("30:20", 100, 30, 30);     /* empty, not negative */
}

static void test_percent_rounds_to_nearest_even(void **state) {
    (void)state;
    /* the original's train[20%:] / train[:20%] on Shapes3D and Fashion-MNIST */
    expect("20%:", 480000, 96000, 480000);
    expect(":20%", 480000, 0, 96000);
    expect(":20%", 60000, 0, 12000);
    /* 20% of 7 = 1.4 -> 1; 50% of 5 = 2.5 -> 2 (ties to even); 50% of 7 = 3.5 -> 4 */
    expect(":20%", 7, 0, 1);
    expect(":50%", 5, 0, 2);
    expect(":50%", 7, 0, 4);
    expect("-10%:", 1000, 900, 1000);
    expect("12.5%:", 80, 10, 80);
}

static void test_bad_syntax(void **state) {
    (void)state;
    const char *bad[] = {"abc", "1:2:3", "5x:", ":20%%", "1.5:", "150%:", "%:"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        long b, e;
        yt_clear_error();
        if (config_range_resolve(bad[i], 100, &b, &e) != YT_ERR_USAGE)
            fail_msg("'%s' accepted", bad[i]);
        assert_non_null(strstr(yt_errmsg(), bad[i]));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_and_absolute),
        cmocka_unit_test(test_percent_rounds_to_nearest_even),
        cmocka_unit_test(test_bad_syntax),
    };
    return TU_RUN("range", tests);
}
