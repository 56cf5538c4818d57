/* test_rng.c — Philox streams: known answers, determinism, distributions. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "testutil.h"

/* Random123's known-answer test: philox4x32-10, counter 0, key 0. */
static void test_known_answer(void **state) {
    (void)state;
    rng_stream s = rng_stream_make(0, 0, 0, 0, 0); /* purpose 0 = raw counter */
    assert_int_equal(rng_u32(&s), 0x6627e8d5u);
    assert_int_equal(rng_u32(&s), 0xe169c58du);
    assert_int_equal(rng_u32(&s), 0xbc57ac4cu);
    assert_int_equal(rng_u32(&s), 0x9b00dbd8u);
}

static void test_same_keys_same_numbers(void **state) {
    (void)state;
    rng_stream a = rng_stream_make(42, RNG_EPS, 7, 1, 3);
    rng_stream b = rng_stream_make(42, RNG_EPS, 7, 1, 3);
    for (int i = 0; i < 100; i++) assert_int_equal(rng_u32(&a), rng_u32(&b));
    /* any key part changes the stream */
    rng_stream c[5] = {rng_stream_make(43, RNG_EPS, 7, 1, 3), rng_stream_make(42, RNG_INIT, 7, 1, 3),
                       rng_stream_make(42, RNG_EPS, 8, 1, 3), rng_stream_make(42, RNG_EPS, 7, 2, 3),
                       rng_stream_make(42, RNG_EPS, 7, 1, 4)};
    rng_stream ref = rng_stream_make(42, RNG_EPS, 7, 1, 3);
    uint32_t r0 = rng_u32(&ref);
    for (int k = 0; k < 5; k++) assert_int_not_equal(rng_u32(&c[k]), r0);
}

static void test_seek(void **state) {
    (void)state;
    rng_stream a = rng_stream_make(1, RNG_DATA_ORDER, 0, 0, 0);
    uint32_t seq[11];
    for (int i = 0; i < 11; i++) seq[i] = rng_u32(&a);
    for (int pos = 0; pos < 11; pos++) {
        rng_stream b = rng_stream_make(1, RNG_DATA_ORDER, 0, 0, 0);
        rng_seek(&b, (uint64_t)pos);
        for (int i = pos; i < 11; i++) assert_int_equal(rng_u32(&b), seq[i]);
    }
}

static void test_uniform_and_normal_moments(void **state) {
    (void)state;
    rng_stream s = rng_stream_make(5, RNG_SYNTHETIC, 0, 0, 0);
    const int n = 200000;
    double su = 0, sn = 0, sn2 = 0, st2 = 0, tmax = 0;
    for (int i = 0; i < n; i++) {
        double u = rng_uniform(&s);
        assert_true(u > 0.0 && u < 1.0);
        su += u;
        double z = rng_normal(&s);
        sn += z;
        sn2 += z * z;
        double t = rng_truncated_normal(&s);
        st2 += t * t;
        tmax = tu_nanmax(tmax, fabs(t));
    }
    assert_true(fabs(su / n - 0.5) < 0.005);
    assert_true(fabs(sn / n) < 0.01);
    assert_true(fabs(sn2 / n - 1.0) < 0.02);
    /* variance of N(0,1) truncated at +-2 is 0.7737 (so std/0.8796 = 1) */
    assert_true(fabs(st2 / n - 0.7737) < 0.01);
    assert_true(tmax <= 2.0);
}

/* rng_normal_fill gives rng_normal's values in turn, bit for bit, from any
 * position (a chunk's edges, a stream started mid-block) */
static void test_normal_fill(void **state) {
    (void)state;
    const size_t lens[] = {0, 1, 63, 64, 65, 200};
    real got[200];
    for (int skip = 0; skip < 3; skip++)
        for (size_t l = 0; l < sizeof lens / sizeof *lens; l++) {
            rng_stream a = rng_stream_make(5, RNG_EPS, 2, 1, (uint32_t)l);
            rng_stream b = a;
            for (int k = 0; k < skip; k++)
                rng_u32(&a), rng_u32(&b);
            rng_normal_fill(&a, got, lens[l]);
            for (size_t i = 0; i < lens[l]; i++) {
                const real want = (real)rng_normal(&b);
                if (memcmp(&got[i], &want, sizeof want))
                    fail_msg("skip %d, length %zu, value %zu: %.9g, want %.9g", skip, lens[l], i,
                             (double)got[i], (double)want);
            }
            assert_int_equal(rng_u32(&a), rng_u32(&b)); /* and leaves the stream where it is */
        }
}

static void test_permutation_is_a_permutation(void **state) {
    (void)state;
    const uint64_t n = 1000;
    uint64_t *p = malloc(n * sizeof *p);
    char *seen = calloc(n, 1);
    rng_stream s = rng_stream_make(9, RNG_DATA_ORDER, 3, 1, 0);
    rng_permutation(&s, p, n);
    int moved = 0;
    for (uint64_t i = 0; i < n; i++) {
        assert_true(p[i] < n);
        assert_false(seen[p[i]]);
        seen[p[i]] = 1;
        moved += p[i] != i;
    }
    assert_true(moved > 900);
    /* rng_below stays in range and hits every value */
    int hits[7] = {0};
    for (int i = 0; i < 7000; i++) hits[rng_below(&s, 7)]++;
    for (int k = 0; k < 7; k++) assert_true(hits[k] > 800 && hits[k] < 1200);
    free(p);
    free(seen);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answer), cmocka_unit_test(test_same_keys_same_numbers),
        cmocka_unit_test(test_seek),         cmocka_unit_test(test_uniform_and_normal_moments),
        cmocka_unit_test(test_normal_fill),  cmocka_unit_test(test_permutation_is_a_permutation),
    };
    return TU_RUN("rng", tests);
}
