/* fuzz_config.c — the YAML config loader with --set overrides.
 *
 * Input: the YAML text, then up to 8 overrides ("key.path=value"), each
 * after a NUL byte. Must hold: YT_OK or YT_ERR_USAGE with a message; a config
 * that loads resolves to YAML (config_to_yaml) that loads again to the same
 * text, and config_where answers for its keys.
 */
#include "config.h"
#include "fuzz.h"

#define FUZZ_SETS_MAX 8

FUZZ_ENTRY(config) {
    char *text = yt_malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    const char *sets[FUZZ_SETS_MAX];
    int nsets = 0;
    for (size_t i = strlen(text); i < size && nsets < FUZZ_SETS_MAX; i += strlen(text + i)) {
        sets[nsets++] = text + ++i; /* past the NUL */
    }
    yoto_config *cfg = yt_malloc(sizeof *cfg), *again = yt_malloc(sizeof *again);
    yt_clear_error();
    int rc = config_load_text(cfg, text, "fuzz.yaml", sets, nsets);
    FUZZ_CHECK(rc == YT_OK || (rc == YT_ERR_USAGE && yt_errmsg()[0]));
    if (rc == YT_OK) {
        char *yaml = config_to_yaml(cfg);
        int rc2 = config_load_text(again, yaml, "resolved.yaml", NULL, 0);
        FUZZ_CHECK(rc2 == YT_OK);
        char *yaml2 = config_to_yaml(again);
        FUZZ_CHECK(strcmp(yaml, yaml2) == 0);
        free(yaml2);
        free(yaml);
        FUZZ_CHECK(config_where(cfg, "model.latent_dim")[0] != '\0');
        FUZZ_CHECK(config_split(cfg, cfg->data.train_split) != NULL);
    }
    free(again);
    free(cfg);
    free(text);
    return 0;
}
