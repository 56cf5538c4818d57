/* yamltree.h — a YAML document as a small tree of nodes that remember where
 * they came from (source number, line, column).
 *
 * libyaml's own document API keeps positions too, but its nodes live in one
 * array per document, so a value parsed from `--set key=value` cannot be
 * grafted into the file's tree. This tree can: every node is its own
 * allocation and carries its own origin, so an error about a grafted value
 * names the --set option and an error about a file value names file:line:col.
 *
 * Scalars keep their text as written (after YAML unescaping) and whether they
 * were plain (unquoted, untagged): the config reader types plain scalars
 * (700000 is an integer, "700000" is a string).
 */
#ifndef YOTO_YAMLTREE_H
#define YOTO_YAMLTREE_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { YN_SCALAR, YN_SEQ, YN_MAP } yn_kind;

typedef struct yn_node {
    yn_kind kind;
    int src;               /* caller's number for the text it came from */
    int line, col;         /* 1-based */
    char *text;            /* scalar: its value, NUL-terminated */
    bool plain;            /* scalar: unquoted and untagged */
    int n, cap;            /* seq: n items; map: n/2 pairs */
    struct yn_node **kids; /* seq: items; map: key0, value0, key1, value1, ... */
} yn_node;

/* Why parsing failed ("malformed YAML: " + libyaml's problem and context, or
 * what the tree refuses), and where. */
typedef struct {
    char msg[256];
    int line, col; /* 1-based */
} yn_error;

/* Parses one YAML document from text[0..len). *root is NULL for an empty
 * stream (nothing but comments and blanks). Returns 0, or -1 with err filled
 * (malformed YAML, more than one document, an alias, a non-scalar key). */
int yn_parse(const char *text, size_t len, int src, yn_node **root, yn_error *err);
void yn_free(yn_node *node);

yn_node *yn_new(yn_kind kind, int src, int line, int col);
yn_node *yn_new_scalar(const char *text, bool plain, int src, int line, int col);
/* Appends a key/value pair to a map; the map takes ownership. */
void yn_map_add(yn_node *map, yn_node *key, yn_node *value);
/* Index of the LAST pair whose key text is key (later duplicates win in
 * lookups; the config reader reports duplicates itself), or -1. */
int yn_map_find(const yn_node *map, const char *key);
/* A plain scalar that YAML reads as null: "", "~", "null". */
bool yn_is_null(const yn_node *node);
/* "a scalar", "a list", "a mapping", "nothing (null)": for messages. */
const char *yn_kind_name(const yn_node *node);

#endif
