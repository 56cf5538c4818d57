/* fuzz_datafile.c — the data-file checks: data_probe (what train, eval and
 * data-info ask of an image dataset) and prepare_info (`yoto data-info`).
 *
 * Input: an HDF5 file. Must hold: YT_OK with a shape that makes sense, or
 * YT_ERR_USAGE with a message naming the file. libhdf5 itself parses the
 * file; crashes inside it on malformed files are libhdf5's (see
 * tests/fuzz/README.md), what yoto does with the values it reads is ours.
 */
#include "data.h"
#include "fuzz.h"
#include "prepare.h"

static FILE *fuzz_devnull(void) {
    static FILE *null;
    if (!null) null = fopen("/dev/null", "w");
    if (!null) abort();
    return null;
}

FUZZ_ENTRY(datafile) {
    const char *path = fuzz_file("data.h5", data, size);
    const char *const datasets[] = {"images", "train/images", "/test/images"};
    for (size_t i = 0; i < sizeof datasets / sizeof *datasets; i++) {
        data_image_info ii;
        yt_clear_error();
        int rc = data_probe(path, datasets[i], &ii);
        FUZZ_CHECK(rc == YT_OK || (rc == YT_ERR_USAGE && strstr(yt_errmsg(), path)));
        if (rc == YT_OK)
            FUZZ_CHECK(ii.n >= 1 && ii.h >= 1 && ii.w >= 1 && ii.c >= 1 &&
                       (ii.ndim == 3 || ii.ndim == 4) &&
                       (double)ii.h * ii.w * ii.c <= (double)(1u << 28));
    }
    yt_clear_error();
    int rc = prepare_info(path, fuzz_devnull());
    FUZZ_CHECK(rc == YT_OK || (rc == YT_ERR_USAGE && strstr(yt_errmsg(), path)));
    return 0;
}
