/* fsutil.h — file-system chores: directories, atomic text files, listings.
 * All return YT_OK or YT_ERR_RUNTIME with a message naming the path. */
#ifndef YOTO_FSUTIL_H
#define YOTO_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>

int fs_mkdir_p(const char *path);
bool fs_exists(const char *path);
bool fs_is_dir(const char *path);
/* Writes text to path via path.tmp + fsync + rename: readers see the old or
 * the new content, never a part. */
int fs_write_atomic(const char *path, const char *text);
/* Reads a whole (small) file; malloc'd, NULL when it cannot. */
char *fs_read_text(const char *path);
/* rename + fsync of the directory, so the new name survives a crash */
int fs_rename_durable(const char *from, const char *to);
/* Names in dir that start with prefix and end with suffix, sorted; *n set.
 * Caller frees each and the array. */
char **fs_list(const char *dir, const char *prefix, const char *suffix, int *n);

#endif
