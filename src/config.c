/* config.c — reads YAML configs (libyaml document API) and `section.key=value` overrides into kl_config,
 * driven by the key table of config_keys.c; cross-key validation; printing the resolved config and the
 * markdown reference. Every error is KL_ERR_CONFIG with "FILE:LINE:COL: key: expected ..., got ...". */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

_Static_assert(sizeof(kl_cfg_arch) == sizeof(int), "enum keys are stored as int");
_Static_assert(sizeof(kl_cfg_recompute) == sizeof(int), "enum keys are stored as int");

#define MAX_CONFIG_BYTES (16u << 20)

/* ---- small helpers ------------------------------------------------------------------------------ */

/* Optimal string alignment distance (Levenshtein plus adjacent transpositions), case-insensitive. */
static size_t edit_distance(const char *a, const char *b) {
    size_t n = strlen(a), m = strlen(b);
    if (n > 64 || m > 64) return (size_t)-1; /* nothing in the table is that long */
    unsigned char d[65][65]; /* distances never exceed 64 */
    for (size_t i = 0; i <= n; i++) d[i][0] = (unsigned char)i;
    for (size_t j = 0; j <= m; j++) d[0][j] = (unsigned char)j;
    for (size_t i = 1; i <= n; i++) {
        for (size_t j = 1; j <= m; j++) {
            size_t cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            size_t best = (size_t)d[i - 1][j] + 1;
            if ((size_t)d[i][j - 1] + 1 < best) best = (size_t)d[i][j - 1] + 1;
            if ((size_t)d[i - 1][j - 1] + cost < best) best = (size_t)d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == tolower((unsigned char)b[j - 1]) &&
                (size_t)d[i - 2][j - 2] + 1 < best)
                best = (size_t)d[i - 2][j - 2] + 1;
            d[i][j] = (unsigned char)best;
        }
    }
    return d[n][m];
}

/* How many edits still count as a misspelling of a word of this length. */
static size_t close_enough(const char *word) {
    size_t n = strlen(word);
    return n <= 3 ? 1 : n <= 6 ? 2 : 3;
}

static int is_section(const char *name) {
    size_t ns;
    const kl_section *s = kl_config_sections(&ns);
    for (size_t i = 0; i < ns; i++)
        if (strcmp(s[i].name, name) == 0) return 1;
    return 0;
}

const kl_key *kl_config_find_key(const char *section, const char *name) {
    size_t nk;
    const kl_key *k = kl_config_keys(&nk);
    for (size_t i = 0; i < nk; i++)
        if (strcmp(k[i].section, section) == 0 && strcmp(k[i].name, name) == 0) return &k[i];
    return NULL;
}

/* " (did you mean 'train'?)" for the nearest section name, or a list of the sections. */
static void suggest_section(const char *name, char *out, size_t n) {
    size_t ns, best_d = (size_t)-1;
    const kl_section *s = kl_config_sections(&ns);
    const char *best = NULL;
    for (size_t i = 0; i < ns; i++) {
        size_t d = edit_distance(name, s[i].name);
        if (d < best_d) best_d = d, best = s[i].name;
    }
    if (best && best_d <= close_enough(name)) {
        snprintf(out, n, " (did you mean '%s'?)", best);
        return;
    }
    size_t len = (size_t)snprintf(out, n, " (sections are");
    for (size_t i = 0; i < ns && len < n; i++)
        len += (size_t)snprintf(out + len, n - len, "%s %s", i ? "," : "", s[i].name);
    if (len < n) snprintf(out + len, n - len, ")");
}

/* " (did you mean 'optim.lr'?)" for an unknown key `name` found in `section`: the same name in another
 * section first, then the nearest key of this section, then the nearest key of any section. */
static void suggest_key(const char *section, const char *name, char *out, size_t n) {
    size_t nk;
    const kl_key *k = kl_config_keys(&nk);
    const kl_key *best = NULL;
    for (size_t i = 0; i < nk && !best; i++)
        if (strcmp(k[i].name, name) == 0) best = &k[i];
    for (int pass = 0; pass < 2 && !best; pass++) {
        size_t best_d = close_enough(name) + 1;
        for (size_t i = 0; i < nk; i++) {
            if (pass == 0 && strcmp(k[i].section, section) != 0) continue;
            size_t d = edit_distance(name, k[i].name);
            if (d < best_d) best_d = d, best = &k[i];
        }
    }
    if (best)
        snprintf(out, n, " (did you mean '%s.%s'?)", best->section, best->name);
    else
        snprintf(out, n, " (see 'kiln config --reference' for the keys of %s)", section);
}

/* Choice number `idx` of "a|b|c" into buf ("" if out of range). */
static const char *enum_choice(const char *choices, int idx, char *buf, size_t n) {
    const char *p = choices;
    for (int i = 0; i < idx && p; i++) {
        p = strchr(p, '|');
        if (p) p++;
    }
    buf[0] = 0;
    if (!p) return buf;
    size_t len = strcspn(p, "|");
    if (len >= n) len = n - 1;
    memcpy(buf, p, len);
    buf[len] = 0;
    return buf;
}

static int enum_index(const char *choices, const char *value) {
    char buf[64];
    for (int i = 0;; i++) {
        enum_choice(choices, i, buf, sizeof buf);
        if (!buf[0]) return -1;
        if (strcmp(buf, value) == 0) return i;
    }
}

/* Exact byte sizes print in the largest binary unit that divides them, so they read back unchanged. */
static void format_bytes_exact(int64_t v, char *buf, size_t n) {
    static const char *units[] = {"TiB", "GiB", "MiB", "KiB"};
    for (int i = 0; i < 4 && v != 0; i++) {
        int64_t unit = (int64_t)1 << (10 * (4 - i));
        if (v % unit == 0) {
            snprintf(buf, n, "%" PRId64 "%s", v / unit, units[i]);
            return;
        }
    }
    snprintf(buf, n, "%" PRId64, v);
}

/* The shortest %g text that reads back to exactly v. */
void kl_key_format_range(const kl_key *k, char *buf, size_t n) {
    char lo[48], hi[48];
    if (k->type == KL_KEY_BYTES) {
        format_bytes_exact((int64_t)k->min, lo, sizeof lo);
        format_bytes_exact((int64_t)k->max, hi, sizeof hi);
    } else if (k->type == KL_KEY_INT) {
        snprintf(lo, sizeof lo, "%.0f", k->min);
        snprintf(hi, sizeof hi, "%.0f", k->max);
    } else {
        kl_format_double(k->min, lo, sizeof lo);
        kl_format_double(k->max, hi, sizeof hi);
    }
    snprintf(buf, n, "%c%s, %s%c", (k->flags & KL_KEY_MIN_OPEN) ? '(' : '[', lo, hi,
             (k->flags & KL_KEY_MAX_OPEN) ? ')' : ']');
}

int kl_key_in_range(const kl_key *k, double v) {
    if ((k->flags & KL_KEY_MIN_OPEN) ? !(v > k->min) : !(v >= k->min)) return 0;
    if ((k->flags & KL_KEY_MAX_OPEN) ? !(v < k->max) : !(v <= k->max)) return 0;
    return 1;
}

/* What a value of key k must look like, e.g. "an integer in [1, 1048576]". */
static void describe_expected(const kl_key *k, char *buf, size_t n) {
    char range[128];
    switch (k->type) {
    case KL_KEY_INT: kl_key_format_range(k, range, sizeof range); snprintf(buf, n, "an integer in %s", range); break;
    case KL_KEY_FLOAT: kl_key_format_range(k, range, sizeof range); snprintf(buf, n, "a number in %s", range); break;
    case KL_KEY_BOOL: snprintf(buf, n, "true or false"); break;
    case KL_KEY_NAME:
        snprintf(buf, n, "a name of 1 to %zu letters, digits, '.', '_' or '-'", k->size - 1);
        break;
    case KL_KEY_ENUM: snprintf(buf, n, "one of %s", k->choices); break;
    case KL_KEY_PATH: snprintf(buf, n, "a path of at most %zu bytes once resolved", k->size - 1); break;
    case KL_KEY_PATHS:
        snprintf(buf, n, "comma-separated paths or globs, at most %zu bytes in all once resolved", k->size - 1);
        break;
    case KL_KEY_BYTES:
        kl_key_format_range(k, range, sizeof range);
        snprintf(buf, n, "a size such as 16GiB or 512MiB in %s", range);
        break;
    }
}

/* ---- paths -------------------------------------------------------------------------------------- */

/* Lexically normalises an absolute path: drops "." and empty components, resolves ".." (never above "/"). */
static void normalize_path(char *p) {
    char *out = p; /* write position; p[0] == '/' */
    const char *in = p;
    size_t len = 0;
    while (*in) {
        while (*in == '/') in++;
        if (!*in) break;
        const char *end = strchr(in, '/');
        size_t clen = end ? (size_t)(end - in) : strlen(in);
        if (clen == 1 && in[0] == '.') {
            /* skip */
        } else if (clen == 2 && in[0] == '.' && in[1] == '.') {
            while (len > 0 && out[len - 1] != '/') len--;
            if (len > 0) len--; /* the slash before the dropped component */
        } else {
            out[len++] = '/';
            memmove(out + len, in, clen); /* in >= out + len: never overwrites what is still to be read */
            len += clen;
        }
        in += clen;
    }
    if (len == 0) out[len++] = '/';
    out[len] = 0;
}

/* Absolute, normalised form of `path`: relative paths join `base_dir` (NULL = the working directory).
 * Returns 0, or -1 when the result does not fit in n bytes or the working directory is unknown. */
static int resolve_path(const char *base_dir, const char *path, char *out, size_t n) {
    char cwd[4096];
    int len;
    if (path[0] == '/') {
        len = snprintf(out, n, "%s", path);
    } else {
        if (!base_dir) {
            if (!getcwd(cwd, sizeof cwd)) return -1;
            base_dir = cwd;
        }
        len = snprintf(out, n, "%s/%s", base_dir, path);
    }
    if (len < 0 || (size_t)len >= n) return -1;
    normalize_path(out);
    return 0;
}

/* Folder of the config file, absolute. */
static kl_status config_dir(const char *yaml_path, char *out, size_t n) {
    char dir[KL_CFG_PATH_MAX * 4];
    const char *slash = strrchr(yaml_path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == yaml_path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - yaml_path), yaml_path);
    if (resolve_path(NULL, dir, out, n) != 0)
        return kl_error(KL_ERR_CONFIG, "%s: cannot resolve the config's folder (%s)", yaml_path, strerror(errno));
    return KL_OK;
}

/* ---- one value ---------------------------------------------------------------------------------- */

static void *field_of(kl_config *c, const kl_key *k) { return (char *)c + k->offset; }
static const void *cfield_of(const kl_config *c, const kl_key *k) { return (const char *)c + k->offset; }

/* Parses `text` (NULL = no value given) into key k of c. On failure writes "expected X, got Y" to why. */
static int parse_value(kl_config *c, const kl_key *k, const char *text, const char *base_dir, char *why, size_t wn) {
    char expected[256], got[160], hint[96] = "";
    void *f = field_of(c, k);
    int ok = 0;
    describe_expected(k, expected, sizeof expected);
    if (!text) {
        if (k->type == KL_KEY_PATH || k->type == KL_KEY_PATHS || k->type == KL_KEY_NAME) text = "";
        else {
            snprintf(why, wn, "expected %s, got no value", expected);
            return -1;
        }
    }
    switch (k->type) {
    case KL_KEY_INT: {
        const char *p = text;
        if (*p == '+' || *p == '-') p++;
        int digits = *p != 0;
        for (const char *q = p; *q; q++) digits = digits && isdigit((unsigned char)*q);
        if (digits) {
            errno = 0;
            long long v = strtoll(text, NULL, 10);
            if (errno == 0 && kl_key_in_range(k, (double)v)) {
                *(int64_t *)f = (int64_t)v;
                ok = 1;
            }
        }
        break;
    }
    case KL_KEY_FLOAT: {
        char *end = NULL;
        errno = 0;
        double v = strtod(text, &end);
        if (*text && !isspace((unsigned char)*text) && *end == 0 && errno == 0 && isfinite(v) &&
            kl_key_in_range(k, v)) {
            *(double *)f = v;
            ok = 1;
        }
        break;
    }
    case KL_KEY_BOOL: {
        static const char *yes[] = {"true", "yes", "on"}, *no[] = {"false", "no", "off"};
        for (int i = 0; i < 3; i++) {
            if (strcasecmp(text, yes[i]) == 0) *(bool *)f = true, ok = 1;
            if (strcasecmp(text, no[i]) == 0) *(bool *)f = false, ok = 1;
        }
        break;
    }
    case KL_KEY_NAME: {
        size_t len = strlen(text);
        ok = len > 0 && len < k->size && strcmp(text, ".") != 0 && strcmp(text, "..") != 0;
        for (size_t i = 0; i < len && ok; i++)
            ok = isalnum((unsigned char)text[i]) || text[i] == '.' || text[i] == '_' || text[i] == '-';
        if (ok) {
            memset(f, 0, k->size);
            memcpy(f, text, len);
        }
        break;
    }
    case KL_KEY_ENUM: {
        int idx = enum_index(k->choices, text);
        if (idx >= 0) {
            *(int *)f = idx;
            ok = 1;
        } else {
            size_t best_d = close_enough(text) + 1;
            char choice[64], best[64] = "";
            for (int i = 0; enum_choice(k->choices, i, choice, sizeof choice)[0]; i++) {
                size_t d = edit_distance(text, choice);
                if (d < best_d) best_d = d, snprintf(best, sizeof best, "%s", choice);
            }
            if (best[0]) snprintf(hint, sizeof hint, " (did you mean '%s'?)", best);
        }
        break;
    }
    case KL_KEY_PATH:
    case KL_KEY_PATHS: {
        char *buf = kl_calloc(1, k->size, "config path");
        if (!buf) {
            snprintf(why, wn, "out of memory");
            return -1;
        }
        size_t used = 0;
        ok = 1;
        const char *p = text;
        if (!*p) p = NULL; /* empty = unset */
        else if (k->type == KL_KEY_PATHS && strchr(text, ',')) {
            /* a list: no entry may be empty */
            for (const char *q = text; ok; q++) {
                const char *e = strchr(q, ',');
                if ((e ? (size_t)(e - q) : strlen(q)) == 0) ok = 0;
                if (!e) break;
                q = e;
            }
            if (!ok) snprintf(hint, sizeof hint, " (an entry of the list is empty)");
        }
        /* a PATH key with choices also takes those words verbatim (train.resume: auto | none | PATH) */
        char word[64];
        for (int i = 0; p && k->type == KL_KEY_PATH && k->choices && enum_choice(k->choices, i, word, sizeof word)[0];
             i++)
            if (strcmp(text, word) == 0) {
                snprintf(buf, k->size, "%s", word);
                p = NULL;
            }
        while (p && ok) {
            size_t len = k->type == KL_KEY_PATHS ? strcspn(p, ",") : strlen(p);
            char item[KL_CFG_PATH_MAX * 2];
            if (len >= sizeof item) {
                ok = 0;
                break;
            }
            memcpy(item, p, len);
            item[len] = 0;
            if (used > 0) buf[used++] = ',';
            if (used >= k->size || resolve_path(base_dir, item, buf + used, k->size - used) != 0) {
                ok = 0;
                break;
            }
            used += strlen(buf + used);
            p = p[len] ? p + len + 1 : NULL;
        }
        if (ok) memcpy(f, buf, k->size);
        free(buf);
        break;
    }
    case KL_KEY_BYTES: {
        double v = 0;
        if (kl_parse_bytes(text, &v) == KL_OK && v == floor(v) && kl_key_in_range(k, v)) {
            *(int64_t *)f = (int64_t)v;
            ok = 1;
        }
        kl_clear_error();
        break;
    }
    }
    if (ok) return 0;
    if (strlen(text) > 80) snprintf(got, sizeof got, "'%.77s...'", text);
    else snprintf(got, sizeof got, "'%s'", text);
    snprintf(why, wn, "expected %s, got %s%s", expected, got, hint);
    return -1;
}

/* ---- defaults and the table check --------------------------------------------------------------- */

void kl_config_defaults(kl_config *c) {
    size_t nk;
    const kl_key *k = kl_config_keys(&nk);
    char why[512];
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < nk; i++) (void)parse_value(c, &k[i], k[i].def, NULL, why, sizeof why);
}

kl_status kl_config_check_table(void) {
    size_t nk, ns;
    const kl_key *k = kl_config_keys(&nk);
    (void)kl_config_sections(&ns);
    kl_config c;
    memset(&c, 0, sizeof c);
    for (size_t i = 0; i < nk; i++) {
        const char *sec = k[i].section, *name = k[i].name;
        if (!is_section(sec)) return kl_error(KL_ERR_INTERNAL, "key %s.%s: unknown section", sec, name);
        if (kl_config_find_key(sec, name) != &k[i])
            return kl_error(KL_ERR_INTERNAL, "key %s.%s appears twice in the table", sec, name);
        if (!k[i].help || !k[i].help[0] || strchr(k[i].help, '\n'))
            return kl_error(KL_ERR_INTERNAL, "key %s.%s: help must be one non-empty line", sec, name);
        if (k[i].offset + k[i].size > sizeof(kl_config))
            return kl_error(KL_ERR_INTERNAL, "key %s.%s: field outside kl_config", sec, name);
        size_t want = 0;
        switch (k[i].type) {
        case KL_KEY_INT:
        case KL_KEY_BYTES: want = sizeof(int64_t); break;
        case KL_KEY_FLOAT: want = sizeof(double); break;
        case KL_KEY_BOOL: want = sizeof(bool); break;
        case KL_KEY_ENUM: want = sizeof(int); break;
        default: want = k[i].size; break;
        }
        if (k[i].size != want) return kl_error(KL_ERR_INTERNAL, "key %s.%s: field size %zu, expected %zu", sec, name, k[i].size, want);
        if ((k[i].type == KL_KEY_INT || k[i].type == KL_KEY_FLOAT || k[i].type == KL_KEY_BYTES) && !(k[i].min < k[i].max))
            return kl_error(KL_ERR_INTERNAL, "key %s.%s: empty range", sec, name);
        if (k[i].type == KL_KEY_ENUM && !k[i].choices)
            return kl_error(KL_ERR_INTERNAL, "key %s.%s: an enum key needs choices", sec, name);
        if (k[i].choices && k[i].type != KL_KEY_ENUM && k[i].type != KL_KEY_PATH)
            return kl_error(KL_ERR_INTERNAL, "key %s.%s: choices belong to enum keys (or path keywords)", sec, name);
        char why[512];
        if (parse_value(&c, &k[i], k[i].def, NULL, why, sizeof why) != 0)
            return kl_error(KL_ERR_INTERNAL, "key %s.%s: default '%s' is invalid: %s", sec, name, k[i].def, why);
    }
    return KL_OK;
}

/* ---- YAML --------------------------------------------------------------------------------------- */

typedef struct {
    yaml_document_t *doc;
    const char *file;     /* for messages */
    const char *base_dir; /* for relative paths */
    kl_config *c;
    int *first_line;      /* per key of the table: line where it was set, 0 = not yet */
} yaml_ctx;

static const char *node_kind(const yaml_node_t *n) {
    return n->type == YAML_SEQUENCE_NODE ? "a sequence" : n->type == YAML_MAPPING_NODE ? "a mapping" : "a scalar";
}

/* A plain scalar that YAML reads as null: empty, ~, null. */
static int is_null_scalar(const yaml_node_t *n) {
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *v = (const char *)n->data.scalar.value;
    return v[0] == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
           strcmp(v, "NULL") == 0;
}

#define LINE(n) ((unsigned long)(n)->start_mark.line + 1)
#define COL(n) ((unsigned long)(n)->start_mark.column + 1)

/* The scalar text of a key node, or an error naming what was found instead. */
static kl_status key_text(const yaml_ctx *x, const yaml_node_t *key, const char *what, const char **out) {
    if (key->type != YAML_SCALAR_NODE)
        return kl_error(KL_ERR_CONFIG, "%s:%lu:%lu: expected %s, got %s", x->file, LINE(key), COL(key), what,
                        node_kind(key));
    if (strlen((const char *)key->data.scalar.value) != key->data.scalar.length)
        return kl_error(KL_ERR_CONFIG, "%s:%lu:%lu: %s contains a NUL byte", x->file, LINE(key), COL(key), what);
    *out = (const char *)key->data.scalar.value;
    return KL_OK;
}

static kl_status load_section(yaml_ctx *x, const char *section, const yaml_node_t *map) {
    size_t nk;
    const kl_key *table = kl_config_keys(&nk);
    for (yaml_node_pair_t *pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *kn = yaml_document_get_node(x->doc, pair->key);
        yaml_node_t *vn = yaml_document_get_node(x->doc, pair->value);
        const char *name;
        KL_TRY(key_text(x, kn, "a key name", &name));
        const kl_key *k = kl_config_find_key(section, name);
        if (!k) {
            char hint[160];
            suggest_key(section, name, hint, sizeof hint);
            return kl_error(KL_ERR_CONFIG, "%s:%lu:%lu: unknown key '%s.%s'%s", x->file, LINE(kn), COL(kn), section,
                            name, hint);
        }
        size_t idx = (size_t)(k - table);
        if (x->first_line[idx])
            return kl_error(KL_ERR_CONFIG, "%s:%lu:%lu: duplicate key '%s.%s' (first set at line %d)", x->file,
                            LINE(kn), COL(kn), section, name, x->first_line[idx]);
        x->first_line[idx] = (int)LINE(kn);
        char expected[256], why[512];
        if (vn->type != YAML_SCALAR_NODE) {
            describe_expected(k, expected, sizeof expected);
            return kl_error(KL_ERR_CONFIG, "%s:%lu:%lu: %s.%s: expected %s, got %s", x->file, LINE(vn), COL(vn),
                            section, name, expected, node_kind(vn));
        }
        const char *text = (const char *)vn->data.scalar.value;
        if (strlen(text) != vn->data.scalar.length)
            return kl_error(KL_ERR_CONFIG, "%s:%lu:%lu: %s.%s: the value contains a NUL byte", x->file, LINE(vn),
                            COL(vn), section, name);
        if (parse_value(x->c, k, is_null_scalar(vn) ? NULL : text, x->base_dir, why, sizeof why) != 0)
            return kl_error(KL_ERR_CONFIG, "%s:%lu:%lu: %s.%s: %s", x->file, LINE(vn), COL(vn), section, name, why);
    }
    return KL_OK;
}

/* A top-level key that is not a section: a key written outside its section, or a misspelt section. */
static kl_status unknown_section(const yaml_ctx *x, const char *name, const yaml_node_t *kn, const yaml_node_t *vn) {
    size_t nk;
    const kl_key *k = kl_config_keys(&nk);
    const char *dot = strchr(name, '.');
    if (dot) {
        char sec[64];
        snprintf(sec, sizeof sec, "%.*s", (int)(dot - name), name);
        if (kl_config_find_key(sec, dot + 1))
            return kl_error(KL_ERR_CONFIG, "%s:%lu:%lu: '%s' must be written as '%s:' inside the '%s:' section",
                            x->file, LINE(kn), COL(kn), name, dot + 1, sec);
    }
    if (vn->type != YAML_MAPPING_NODE) {
        char owners[256] = "";
        size_t len = 0, count = 0;
        for (size_t i = 0; i < nk; i++) {
            if (strcmp(k[i].name, name) != 0) continue;
            if (len < sizeof owners)
                len += (size_t)snprintf(owners + len, sizeof owners - len, "%s'%s.%s'", count ? " or " : "",
                                        k[i].section, name);
            count++;
        }
        if (count)
            return kl_error(KL_ERR_CONFIG, "%s:%lu:%lu: key '%s' is outside any section (did you mean %s?)", x->file,
                            LINE(kn), COL(kn), name, owners);
    }
    char hint[160];
    suggest_section(name, hint, sizeof hint);
    return kl_error(KL_ERR_CONFIG, "%s:%lu:%lu: unknown section '%s'%s", x->file, LINE(kn), COL(kn), name, hint);
}

static kl_status load_root(yaml_ctx *x, const yaml_node_t *root) {
    size_t ns;
    const kl_section *sections = kl_config_sections(&ns);
    if (root->type != YAML_MAPPING_NODE)
        return kl_error(KL_ERR_CONFIG, "%s:%lu:%lu: expected a mapping of sections (model:, data:, train:, ...), got %s",
                        x->file, LINE(root), COL(root), node_kind(root));
    int seen[32] = {0};
    for (yaml_node_pair_t *pair = root->data.mapping.pairs.start; pair < root->data.mapping.pairs.top; pair++) {
        yaml_node_t *kn = yaml_document_get_node(x->doc, pair->key);
        yaml_node_t *vn = yaml_document_get_node(x->doc, pair->value);
        const char *name;
        KL_TRY(key_text(x, kn, "a section name", &name));
        size_t s = 0;
        while (s < ns && strcmp(sections[s].name, name) != 0) s++;
        if (s == ns) return unknown_section(x, name, kn, vn);
        if (s < 32 && seen[s])
            return kl_error(KL_ERR_CONFIG, "%s:%lu:%lu: duplicate section '%s' (first at line %d)", x->file, LINE(kn),
                            COL(kn), name, seen[s]);
        if (s < 32) seen[s] = (int)LINE(kn);
        if (is_null_scalar(vn)) continue; /* "log:" with nothing under it */
        if (vn->type != YAML_MAPPING_NODE)
            return kl_error(KL_ERR_CONFIG, "%s:%lu:%lu: section '%s' must hold 'key: value' lines, got %s", x->file,
                            LINE(vn), COL(vn), name, node_kind(vn));
        KL_TRY(load_section(x, name, vn));
    }
    return KL_OK;
}

/* Line and column (1-based) of byte `offset` in text. */
static void offset_to_line_col(const char *text, size_t len, size_t offset, unsigned long *line, unsigned long *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < offset && i < len; i++) {
        if (text[i] == '\n') ++*line, *col = 1;
        else ++*col;
    }
}

static kl_status yaml_failure(const yaml_parser_t *p, const char *file, const char *text, size_t len) {
    unsigned long line, col;
    if (p->error == YAML_MEMORY_ERROR) return kl_error(KL_ERR_OOM, "%s: out of memory while parsing YAML", file);
    if (p->error == YAML_READER_ERROR) {
        offset_to_line_col(text, len, p->problem_offset, &line, &col);
        return kl_error(KL_ERR_CONFIG, "%s:%lu:%lu: YAML syntax error: %s", file, line, col,
                        p->problem ? p->problem : "unreadable text");
    }
    line = (unsigned long)p->problem_mark.line + 1;
    col = (unsigned long)p->problem_mark.column + 1;
    if (p->context)
        return kl_error(KL_ERR_CONFIG, "%s:%lu:%lu: YAML syntax error: %s (%s at line %lu, column %lu)", file, line,
                        col, p->problem ? p->problem : "invalid YAML", p->context,
                        (unsigned long)p->context_mark.line + 1, (unsigned long)p->context_mark.column + 1);
    return kl_error(KL_ERR_CONFIG, "%s:%lu:%lu: YAML syntax error: %s", file, line, col,
                    p->problem ? p->problem : "invalid YAML");
}

static kl_status load_text(kl_config *out, const char *text, const char *file, const char *base_dir) {
    size_t len = strlen(text), nk;
    (void)kl_config_keys(&nk);
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) return kl_error(KL_ERR_OOM, "%s: cannot start the YAML parser", file);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        kl_status s = yaml_failure(&parser, file, text, len);
        yaml_parser_delete(&parser);
        return s;
    }
    kl_status s = KL_OK;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        s = kl_error(KL_ERR_CONFIG, "%s:1:1: the config is empty (expected sections such as 'model:' and 'train:')",
                     file);
    } else {
        yaml_document_t next;
        if (!yaml_parser_load(&parser, &next)) {
            s = yaml_failure(&parser, file, text, len);
        } else {
            yaml_node_t *r2 = yaml_document_get_root_node(&next);
            if (r2)
                s = kl_error(KL_ERR_CONFIG, "%s:%lu:%lu: a second YAML document; a config is one document", file,
                             LINE(r2), COL(r2));
            yaml_document_delete(&next);
        }
    }
    if (s == KL_OK) {
        kl_config *c = kl_malloc(sizeof *c, "config");
        int *first_line = kl_calloc(nk, sizeof(int), "config key lines");
        if (!c || !first_line) {
            s = KL_ERR_OOM;
        } else {
            kl_config_defaults(c);
            yaml_ctx x = {&doc, file, base_dir, c, first_line};
            s = load_root(&x, root);
            if (s == KL_OK) *out = *c;
        }
        free(c);
        free(first_line);
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return s;
}

kl_status kl_config_load_string(kl_config *c, const char *yaml, const char *name, const char *base_dir) {
    char dir[KL_CFG_PATH_MAX];
    if (!name) name = "<config>";
    if (base_dir) {
        if (resolve_path(NULL, base_dir, dir, sizeof dir) != 0)
            return kl_error(KL_ERR_CONFIG, "%s: cannot resolve the folder '%s'", name, base_dir);
        base_dir = dir;
    }
    return load_text(c, yaml, name, base_dir);
}

kl_status kl_config_load(kl_config *c, const char *yaml_path) {
    struct stat st;
    if (!yaml_path || !*yaml_path) return kl_error(KL_ERR_CONFIG, "no config file given (expected CONFIG.yaml)");
    if (stat(yaml_path, &st) != 0)
        return kl_error(KL_ERR_CONFIG, "%s: cannot open the config: %s", yaml_path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return kl_error(KL_ERR_CONFIG, "%s: not a file (expected a YAML config)", yaml_path);
    if (st.st_size > (off_t)MAX_CONFIG_BYTES)
        return kl_error(KL_ERR_CONFIG, "%s: %lld bytes is too large for a config (at most %u)", yaml_path,
                        (long long)st.st_size, MAX_CONFIG_BYTES);
    FILE *f = fopen(yaml_path, "rb");
    if (!f) return kl_error(KL_ERR_CONFIG, "%s: cannot open the config: %s", yaml_path, strerror(errno));
    size_t cap = (size_t)st.st_size + 1;
    char *text = kl_malloc(cap, "config text");
    if (!text) {
        fclose(f);
        return KL_ERR_OOM;
    }
    size_t len = fread(text, 1, cap - 1, f);
    int read_error = ferror(f);
    fclose(f);
    text[len] = 0;
    kl_status s = KL_OK;
    if (read_error) s = kl_error(KL_ERR_CONFIG, "%s: cannot read the config", yaml_path);
    else if (strlen(text) != len) s = kl_error(KL_ERR_CONFIG, "%s: contains a NUL byte (expected YAML text)", yaml_path);
    char dir[KL_CFG_PATH_MAX];
    if (s == KL_OK) s = config_dir(yaml_path, dir, sizeof dir);
    if (s == KL_OK) s = load_text(c, text, yaml_path, dir);
    free(text);
    return s;
}

/* ---- overrides ---------------------------------------------------------------------------------- */

kl_status kl_config_set(kl_config *c, const char *assignment) {
    const char *eq = strchr(assignment, '=');
    if (!eq)
        return kl_error(KL_ERR_CONFIG, "command line: '%s' is not an override (expected section.key=value)", assignment);
    char key[128];
    if ((size_t)(eq - assignment) >= sizeof key)
        return kl_error(KL_ERR_CONFIG, "command line: '%.40s...' has no such key (expected section.key=value)",
                        assignment);
    snprintf(key, sizeof key, "%.*s", (int)(eq - assignment), assignment);
    char *dot = strchr(key, '.');
    char hint[160];
    if (!dot) {
        size_t nk;
        const kl_key *k = kl_config_keys(&nk);
        for (size_t i = 0; i < nk; i++)
            if (strcmp(k[i].name, key) == 0)
                return kl_error(KL_ERR_CONFIG, "command line: '%s' needs its section (did you mean '%s.%s'?)", assignment,
                                k[i].section, key);
        return kl_error(KL_ERR_CONFIG, "command line: '%s' is not an override (expected section.key=value)", assignment);
    }
    *dot = 0;
    const char *section = key, *name = dot + 1;
    if (!is_section(section)) {
        suggest_section(section, hint, sizeof hint);
        return kl_error(KL_ERR_CONFIG, "command line: %s: unknown section '%s'%s", assignment, section, hint);
    }
    const kl_key *k = kl_config_find_key(section, name);
    if (!k) {
        suggest_key(section, name, hint, sizeof hint);
        return kl_error(KL_ERR_CONFIG, "command line: unknown key '%s.%s'%s", section, name, hint);
    }
    kl_config *tmp = kl_malloc(sizeof *tmp, "config");
    if (!tmp) return KL_ERR_OOM;
    *tmp = *c;
    char why[512];
    const char *value = eq + 1;
    kl_status s = KL_OK;
    if (parse_value(tmp, k, *value ? value : NULL, NULL, why, sizeof why) != 0)
        s = kl_error(KL_ERR_CONFIG, "command line: %s: %s", assignment, why);
    else
        *c = *tmp;
    free(tmp);
    return s;
}

/* ---- cross-key validation ----------------------------------------------------------------------- */

kl_status kl_config_validate(const kl_config *c) {
    if (c->model.hf_dir[0] && c->model.hf_config[0])
        return kl_error(KL_ERR_CONFIG, "set only one of model.hf_dir and model.hf_config (hf_dir has its own config.json)");
    if (!c->model.hf_dir[0] && !c->model.hf_config[0]) {
        const int64_t nh = c->model.num_heads, nkv = c->model.num_kv_heads ? c->model.num_kv_heads : nh;
        if (nh % nkv != 0)
            return kl_error(KL_ERR_CONFIG, "model.num_kv_heads (%" PRId64 ") must divide model.num_heads (%" PRId64 ")",
                            nkv, nh);
        if (c->model.head_dim == 0 && c->model.hidden_size % nh != 0)
            return kl_error(KL_ERR_CONFIG,
                            "model.num_heads (%" PRId64 ") must divide model.hidden_size (%" PRId64
                            ") unless model.head_dim is set",
                            nh, c->model.hidden_size);
        if (c->data.seq_len > c->model.max_seq_len)
            return kl_error(KL_ERR_CONFIG, "data.seq_len (%" PRId64 ") exceeds model.max_seq_len (%" PRId64 ")",
                            c->data.seq_len, c->model.max_seq_len);
    }
    if (c->model.rope_scaling == KL_CFG_ROPE_LLAMA3 && !(c->model.rope_high_freq_factor > c->model.rope_low_freq_factor))
        return kl_error(KL_ERR_CONFIG,
                        "model.rope_high_freq_factor (%g) must exceed model.rope_low_freq_factor (%g) for llama3 "
                        "scaling",
                        c->model.rope_high_freq_factor, c->model.rope_low_freq_factor);
    if (c->data.source == KL_CFG_DATA_FILES && !c->data.train[0])
        return kl_error(KL_ERR_CONFIG, "data.train is required when data.source is files (or set data.source: synthetic)");
    if (c->train.warmup_steps > c->train.steps)
        return kl_error(KL_ERR_CONFIG, "train.warmup_steps (%" PRId64 ") exceeds train.steps (%" PRId64 ")",
                        c->train.warmup_steps, c->train.steps);
    return KL_OK;
}

kl_status kl_config_parse_args(kl_config *c, const char *yaml_path, int argc, char **argv) {
    kl_config *tmp = kl_malloc(sizeof *tmp, "config");
    if (!tmp) return KL_ERR_OOM;
    kl_status s = KL_OK;
    if (yaml_path) s = kl_config_load(tmp, yaml_path);
    else kl_config_defaults(tmp);
    for (int i = 0; i < argc && s == KL_OK; i++) s = kl_config_set(tmp, argv[i]);
    if (s == KL_OK) {
        s = kl_config_validate(tmp);
        if (s != KL_OK)
            s = kl_error_context(s, "%s%s", yaml_path ? yaml_path : "defaults", argc > 0 ? " with the overrides" : "");
    }
    if (s == KL_OK) *c = *tmp;
    free(tmp);
    return s;
}

/* ---- output ------------------------------------------------------------------------------------- */

/* A YAML double-quoted scalar: quote, backslash and control bytes escaped. */
static void quote_string(const char *s, char *buf, size_t n) {
    size_t len = 0;
    if (n < 3) {
        if (n) buf[0] = 0;
        return;
    }
    buf[len++] = '"';
    for (; *s && len + 6 < n; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') buf[len++] = '\\', buf[len++] = (char)ch;
        else if (ch < 0x20 || ch == 0x7f) len += (size_t)snprintf(buf + len, n - len, "\\x%02x", ch);
        else buf[len++] = (char)ch;
    }
    buf[len++] = '"';
    buf[len] = 0;
}

const char *kl_config_format_value(const kl_config *c, const kl_key *k, char *buf, size_t n) {
    const void *f = cfield_of(c, k);
    switch (k->type) {
    case KL_KEY_INT: snprintf(buf, n, "%" PRId64, *(const int64_t *)f); break;
    case KL_KEY_FLOAT: kl_format_double(*(const double *)f, buf, n); break;
    case KL_KEY_BOOL: snprintf(buf, n, "%s", *(const bool *)f ? "true" : "false"); break;
    case KL_KEY_ENUM: enum_choice(k->choices, *(const int *)f, buf, n); break;
    case KL_KEY_NAME:
    case KL_KEY_PATH:
    case KL_KEY_PATHS: quote_string((const char *)f, buf, n); break;
    case KL_KEY_BYTES: format_bytes_exact(*(const int64_t *)f, buf, n); break;
    }
    return buf;
}

void kl_config_print(const kl_config *c, FILE *f) {
    size_t nk, ns;
    const kl_key *k = kl_config_keys(&nk);
    const kl_section *s = kl_config_sections(&ns);
    char value[KL_CFG_PATH_MAX * 4 + 8], line[KL_CFG_PATH_MAX * 4 + 128];
    for (size_t si = 0; si < ns; si++) {
        fprintf(f, "%s:  # %s\n", s[si].name, s[si].help);
        for (size_t i = 0; i < nk; i++) {
            if (strcmp(k[i].section, s[si].name) != 0) continue;
            snprintf(line, sizeof line, "  %s: %s", k[i].name, kl_config_format_value(c, &k[i], value, sizeof value));
            fprintf(f, "%-40s # %s\n", line, k[i].help);
        }
    }
}

static const char *type_name(kl_key_type t) {
    switch (t) {
    case KL_KEY_INT: return "int";
    case KL_KEY_FLOAT: return "float";
    case KL_KEY_BOOL: return "bool";
    case KL_KEY_NAME: return "name";
    case KL_KEY_ENUM: return "enum";
    case KL_KEY_PATH: return "path";
    case KL_KEY_PATHS: return "paths";
    case KL_KEY_BYTES: return "bytes";
    }
    return "?";
}

/* Markdown table cell text: '|' escaped. */
static void md_cell(FILE *f, const char *text) {
    for (; *text; text++) {
        if (*text == '|') fputc('\\', f);
        fputc(*text, f);
    }
}

void kl_config_print_reference(FILE *f) {
    size_t nk, ns;
    const kl_key *k = kl_config_keys(&nk);
    const kl_section *s = kl_config_sections(&ns);
    fprintf(f, "Generated by `kiln config --reference` from the key table (`src/config_keys.c`).\n"
               "A config is a YAML file with the sections below; `kiln train CONFIG.yaml section.key=value ...`\n"
               "overrides single keys with the same checks. Relative paths resolve against the config file's\n"
               "folder (against the working directory on the command line). Unless `train.out_dir` is set, a run\n"
               "writes under `runs/<train.name>/` in the working directory: `metrics.jsonl` and `ckpt/`.\n");
    for (size_t si = 0; si < ns; si++) {
        fprintf(f, "\n### %s\n\n%c%s.\n\n", s[si].name, toupper((unsigned char)s[si].help[0]), s[si].help + 1);
        fprintf(f, "| key | type | default | range / choices | meaning |\n|---|---|---|---|---|\n");
        for (size_t i = 0; i < nk; i++) {
            if (strcmp(k[i].section, s[si].name) != 0) continue;
            char range[160] = "";
            fprintf(f, "| `%s.%s` | %s | ", k[i].section, k[i].name, type_name(k[i].type));
            if (k[i].def[0]) fprintf(f, "`%s`", k[i].def);
            else fprintf(f, "(unset)");
            fprintf(f, " | ");
            switch (k[i].type) {
            case KL_KEY_INT:
            case KL_KEY_FLOAT:
            case KL_KEY_BYTES: kl_key_format_range(&k[i], range, sizeof range); fprintf(f, "%s", range); break;
            case KL_KEY_BOOL: fprintf(f, "`true`, `false`"); break;
            case KL_KEY_NAME: fprintf(f, "letters, digits, `.`, `_`, `-`"); break;
            case KL_KEY_ENUM: {
                char choice[64];
                for (int ci = 0; enum_choice(k[i].choices, ci, choice, sizeof choice)[0]; ci++)
                    fprintf(f, "%s`%s`", ci ? ", " : "", choice);
                break;
            }
            case KL_KEY_PATH:
                if (k[i].choices) {
                    char choice[64];
                    for (int ci = 0; enum_choice(k[i].choices, ci, choice, sizeof choice)[0]; ci++)
                        fprintf(f, "`%s`, ", choice);
                }
                fprintf(f, "path");
                break;
            case KL_KEY_PATHS: fprintf(f, "comma-separated paths / globs"); break;
            }
            fprintf(f, " | ");
            md_cell(f, k[i].help);
            fprintf(f, " |\n");
        }
    }
}

/* ---- run outputs -------------------------------------------------------------------------------- */

static kl_status fits(int len, size_t n, const char *what) {
    if (len < 0 || (size_t)len >= n) return kl_error(KL_ERR_CONFIG, "%s is longer than %zu bytes", what, n - 1);
    return KL_OK;
}

kl_status kl_config_run_dir(const kl_config *c, char *buf, size_t n) {
    if (c->train.out_dir[0]) return fits(snprintf(buf, n, "%s", c->train.out_dir), n, "the run folder");
    return fits(snprintf(buf, n, "runs/%s", c->train.name), n, "the run folder");
}

kl_status kl_config_metrics_path(const kl_config *c, char *buf, size_t n) {
    if (c->log.metrics[0]) return fits(snprintf(buf, n, "%s", c->log.metrics), n, "the metrics path");
    KL_TRY(kl_config_run_dir(c, buf, n));
    size_t len = strlen(buf);
    return fits(snprintf(buf + len, n - len, "/metrics.jsonl"), n - len, "the metrics path");
}

kl_status kl_config_ckpt_dir(const kl_config *c, char *buf, size_t n) {
    KL_TRY(kl_config_run_dir(c, buf, n));
    size_t len = strlen(buf);
    return fits(snprintf(buf + len, n - len, "/ckpt"), n - len, "the checkpoint folder");
}

int kl_config_cli_error(const char *cmd, kl_status s) {
    if (s == KL_OK) return 0;
    fprintf(stderr, "kiln %s: %s\n", cmd, kl_last_error());
    return (s == KL_ERR_CONFIG || s == KL_ERR_INVALID || s == KL_ERR_UNSUPPORTED) ? 2 : 1;
}
