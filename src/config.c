/* config.c — placeholder until the schema lands (issue #2). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "common.h"

int config_load(yoto_config *cfg, const char *path, const char *const *sets, int nsets) {
    (void)sets;
    (void)nsets;
    memset(cfg, 0, sizeof *cfg);
    return yt_fail(YT_ERR_USAGE, "%s: config loading is not built yet", path);
}

int config_load_text(yoto_config *cfg, const char *text, const char *source,
                     const char *const *sets, int nsets) {
    (void)text;
    return config_load(cfg, source, sets, nsets);
}

char *config_to_yaml(const yoto_config *cfg) {
    (void)cfg;
    return yt_strdup("");
}
