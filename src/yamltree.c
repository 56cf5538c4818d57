/* yamltree.c — libyaml's event stream folded into a tree of positioned nodes. */
#include "yamltree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common.h"

/* Nesting deeper than this is not a config; the limit keeps a hostile
 * "[[[[[..." from exhausting the stack of open nodes. */
#define YN_DEPTH_MAX 64

yn_node *yn_new(yn_kind kind, int src, int line, int col) {
    yn_node *n = yt_calloc(1, sizeof *n);
    n->kind = kind;
    n->src = src;
    n->line = line;
    n->col = col;
    return n;
}

yn_node *yn_new_scalar(const char *text, bool plain, int src, int line, int col) {
    yn_node *n = yn_new(YN_SCALAR, src, line, col);
    n->text = yt_strdup(text);
    n->plain = plain;
    return n;
}

void yn_free(yn_node *node) {
    if (!node) return;
    for (int i = 0; i < node->n; i++)
        yn_free(node->kids[i]);
    free(node->kids);
    free(node->text);
    free(node);
}

static void push_kid(yn_node *parent, yn_node *kid) {
    if (parent->n == parent->cap) {
        parent->cap = parent->cap ? 2 * parent->cap : 8;
        parent->kids = yt_realloc(parent->kids, (size_t)parent->cap * sizeof *parent->kids);
    }
    parent->kids[parent->n++] = kid;
}

void yn_map_add(yn_node *map, yn_node *key, yn_node *value) {
    YT_CHECK(map->kind == YN_MAP && key->kind == YN_SCALAR);
    push_kid(map, key);
    push_kid(map, value);
}

int yn_map_find(const yn_node *map, const char *key) {
    for (int i = map->n - 2; i >= 0; i -= 2)
        if (strcmp(map->kids[i]->text, key) == 0) return i / 2;
    return -1;
}

bool yn_is_null(const yn_node *node) {
    if (node->kind != YN_SCALAR || !node->plain) return false;
    const char *t = node->text;
    return !*t || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") || !strcmp(t, "NULL");
}

const char *yn_kind_name(const yn_node *node) {
    if (node->kind == YN_MAP) return "a mapping";
    if (node->kind == YN_SEQ) return "a list";
    return yn_is_null(node) ? "nothing (null)" : "a scalar";
}

static int fail_at(yn_error *err, const yaml_mark_t *mark, const char *fmt, const char *arg) {
    snprintf(err->msg, sizeof err->msg, fmt, arg);
    err->line = (int)mark->line + 1;
    err->col = (int)mark->column + 1;
    return -1;
}

/* Adds a finished node to the open collection on top of the stack (or makes
 * it the root). A map alternates key, value; keys must be scalars. */
static int attach(yn_node **stack, int depth, yn_node **root, yn_node *node,
                  const yaml_mark_t *mark, yn_error *err) {
    if (depth == 0) {
        *root = node;
        return 0;
    }
    yn_node *top = stack[depth - 1];
    if (top->kind == YN_MAP && top->n % 2 == 0 && node->kind != YN_SCALAR) {
        yn_free(node);
        return fail_at(err, mark, "%s",
                       "a mapping key must be a plain word, not a list or mapping");
    }
    push_kid(top, node);
    return 0;
}

int yn_parse(const char *text, size_t len, int src, yn_node **root, yn_error *err) {
    yaml_parser_t parser;
    yaml_event_t ev;
    yn_node *stack[YN_DEPTH_MAX];
    int depth = 0, docs = 0, rc = 0;
    bool done = false;

    *root = NULL;
    memset(err, 0, sizeof *err);
    if (!yaml_parser_initialize(&parser)) yt_die("libyaml: cannot initialise a parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);

    while (!done && rc == 0) {
        if (!yaml_parser_parse(&parser, &ev)) {
            const yaml_mark_t *m = &parser.problem_mark;
            char what[200];
            if (parser.context)
                snprintf(what, sizeof what, "malformed YAML: %s %s",
                         parser.problem ? parser.problem : "error", parser.context);
            else
                snprintf(what, sizeof what, "malformed YAML: %s",
                         parser.problem ? parser.problem : "error");
            rc = fail_at(err, m, "%s", what);
            break;
        }
        const yaml_mark_t *mk = &ev.start_mark;
        int line = (int)mk->line + 1, col = (int)mk->column + 1;
        yn_node *node = NULL;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1)
                rc = fail_at(err, mk, "%s", "more than one YAML document (a second '---')");
            break;
        case YAML_ALIAS_EVENT:
            rc = fail_at(err, mk,
                         "YAML alias '*%s' is not supported in configs; write the value out",
                         (const char *)ev.data.alias.anchor);
            break;
        case YAML_SCALAR_EVENT: {
            const char *tag = (const char *)ev.data.scalar.tag;
            bool plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !tag;
            if (strlen((const char *)ev.data.scalar.value) != ev.data.scalar.length) {
                rc = fail_at(err, mk, "%s", "a NUL character inside a value");
                break;
            }
            node = yn_new_scalar((const char *)ev.data.scalar.value, plain, src, line, col);
            rc = attach(stack, depth, root, node, mk, err);
            break;
        }
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            if (depth == YN_DEPTH_MAX) {
                rc = fail_at(err, mk, "%s", "nested too deeply");
                break;
            }
            node = yn_new(ev.type == YAML_SEQUENCE_START_EVENT ? YN_SEQ : YN_MAP, src, line, col);
            rc = attach(stack, depth, root, node, mk, err);
            if (rc == 0) stack[depth++] = node;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            depth--;
            break;
        default: /* stream start, document end */
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    if (rc != 0) {
        yn_free(*root);
        *root = NULL;
    }
    return rc;
}
