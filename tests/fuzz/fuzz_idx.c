/* fuzz_idx.c — the IDX reader of `yoto prepare fashion-mnist|mnist`
 * (prepare_read_idx), plain or gzipped.
 *
 * Input: the file. Read as a 1-d (labels) and a 3-d (images) IDX file. Must
 * hold: YT_OK with dims whose product is nbytes and the data there, or
 * YT_ERR_USAGE with a message; memory bounded by the input, not the header.
 */
#include "fuzz.h"
#include "prepare.h"

FUZZ_ENTRY(idx) {
    const char *path = fuzz_file("input.idx", data, size);
    for (int nd = 1; nd <= 3; nd += 2) {
        prepare_idx_array a;
        yt_clear_error();
        int rc = prepare_read_idx(path, nd, &a);
        FUZZ_CHECK(rc == YT_OK || (rc == YT_ERR_USAGE && yt_errmsg()[0] && !a.data));
        if (rc != YT_OK) continue;
        size_t n = 1;
        for (int i = 0; i < a.ndim; i++)
            n *= a.dims[i];
        FUZZ_CHECK(a.ndim == nd && n == a.nbytes && n > 0 && a.data);
        unsigned sum = 0;
        for (size_t i = 0; i < a.nbytes; i++)
            sum += a.data[i]; /* every byte is there */
        (void)sum;
        free(a.data);
    }
    return 0;
}
