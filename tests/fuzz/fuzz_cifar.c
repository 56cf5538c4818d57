/* fuzz_cifar.c — the CIFAR-10 binary batch reader of `yoto prepare cifar10`
 * (prepare_read_cifar).
 *
 * Input: the file. Must hold: YT_OK with size / 3073 records, labels 0..9
 * and the pixels moved from CHW to HWC, or YT_ERR_USAGE with a message.
 */
#include "fuzz.h"
#include "prepare.h"

FUZZ_ENTRY(cifar) {
    const char *path = fuzz_file("data_batch.bin", data, size);
    uint8_t *images = NULL, *labels = NULL;
    long n = -1;
    yt_clear_error();
    int rc = prepare_read_cifar(path, &images, &labels, &n);
    FUZZ_CHECK(rc == YT_OK || (rc == YT_ERR_USAGE && yt_errmsg()[0] && !images && !labels));
    if (rc == YT_OK) {
        FUZZ_CHECK(n >= 1 && (size_t)n * 3073 == size);
        for (long r = 0; r < n; r++) {
            FUZZ_CHECK(labels[r] == data[(size_t)r * 3073] && labels[r] <= 9);
            /* pixel (y, x) of channel ch: CHW in the file, HWC in memory */
            size_t p = (size_t)(r * 7 % 1024), ch = (size_t)(r % 3);
            FUZZ_CHECK(images[(size_t)r * 3072 + p * 3 + ch] ==
                       data[(size_t)r * 3073 + 1 + ch * 1024 + p]);
        }
    }
    free(images);
    free(labels);
    return 0;
}
