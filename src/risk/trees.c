/* risk/trees.c: the model's trees evaluated by paycore itself, with XGBoost's
 * arithmetic, so that a score costs a walk over flat arrays instead of an XGBoost
 * call (which parses its JSON configuration and sets up on every call).
 *
 * The trees come from the booster's own JSON model (XGBoost 1.7: learner ->
 * gradient_booster -> model -> trees). Each tree is renumbered so that a node's
 * two children sit side by side: the next node is left + !(x < threshold), as in
 * XGBoost's predictor. A score is computed exactly as XGBoost 1.7 computes it:
 *   margin = base margin (-logf(1 / base_score - 1), in float)
 *   margin += leaf value, tree by tree in model order (float additions)
 *   missing (NaN) follows the node's default direction, else `x < threshold` in float
 *   score = sigmoid(margin) with XGBoost's own formula (common::Sigmoid)
 * Only what is evaluated exactly is accepted: binary:logistic or reg:logistic, gbtree,
 * one output, numerical splits. Anything else is refused with the reason, and the
 * caller scores through XGBoost (model.c). */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "risk/risk_internal.h"

typedef struct {
    float cond;              /* split threshold; a leaf's value */
    uint16_t feature;        /* split feature */
    uint8_t leaf;
    uint8_t default_left;    /* missing goes left */
    uint32_t left;           /* left child; the right child is left + 1 */
} walk_node;

struct risk_trees {
    float base_margin;
    uint32_t tree_count;
    uint32_t node_count;
    uint32_t *roots;
    walk_node *nodes;
};

/* One tree of the JSON model, as borrowed arrays. */
typedef struct {
    const json_t *lefts, *rights, *features, *conds, *default_left;
    size_t node_count;
} json_tree;

typedef struct {
    risk_trees_t *trees;
    uint32_t nodes_cap;
    char *why;
    size_t why_bytes;
} build;

static bool refuse(build *b, const char *fmt, ...) {
    if (b->why != NULL && b->why_bytes > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(b->why, b->why_bytes, fmt, ap);
        va_end(ap);
    }
    return false;
}

/* XGBoost writes a float in its shortest decimal form; jansson reads it as a double.
 * Rounding that double to float gives XGBoost's float unless the double sits exactly
 * on the midpoint of two floats (then the decimal may have been on either side):
 * refused, never guessed. */
static bool float_of(const json_t *v, float *out) {
    if (!json_is_number(v)) return false;
    double d = json_number_value(v);
    float f = (float)d;
    if (!isfinite(d) || !isfinite(f)) return false;
    if ((double)f != d) {
        float other = nextafterf(f, d > (double)f ? INFINITY : -INFINITY);
        if (((double)f + (double)other) / 2.0 == d) return false;
    }
    *out = f;
    return true;
}

static bool int_at(const json_t *array, size_t i, int64_t *out) {
    const json_t *v = json_array_get(array, i);
    if (!json_is_integer(v)) return false;
    *out = json_integer_value(v);
    return true;
}

/* Decimal string fields of the learner ("num_class": "0"). */
static bool str_int(const json_t *object, const char *key, int64_t *out) {
    const char *s = json_string_value(json_object_get(object, key));
    if (s == NULL) return false;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0') return false;
    *out = v;
    return true;
}

static const json_t *path_get(const json_t *root, const char *const *keys, size_t count) {
    const json_t *v = root;
    for (size_t i = 0; i < count && v != NULL; i++) v = json_object_get(v, keys[i]);
    return v;
}

/* XGBoost's LogisticRegression::ProbToMargin, in float. */
static bool base_margin_of(const json_t *learner, build *b) {
    const char *const keys[] = {"learner_model_param", "base_score"};
    const char *s = json_string_value(path_get(learner, keys, 2));
    if (s == NULL) return refuse(b, "no base_score");
    char *end = NULL;
    float base_score = strtof(s, &end);
    if (end == s || *end != '\0' || !(base_score > 0.0f && base_score < 1.0f)) {
        return refuse(b, "base_score %s outside (0, 1)", s);
    }
    b->trees->base_margin = -logf(1.0f / base_score - 1.0f);
    return true;
}

static bool learner_supported(const json_t *learner, build *b) {
    const char *const obj_keys[] = {"objective", "name"};
    const char *objective = json_string_value(path_get(learner, obj_keys, 2));
    if (objective == NULL ||
        (strcmp(objective, "binary:logistic") != 0 && strcmp(objective, "reg:logistic") != 0)) {
        return refuse(b, "objective %s", objective ? objective : "(none)");
    }
    const json_t *param = json_object_get(learner, "learner_model_param");
    int64_t num_class = 0, num_target = 1, num_feature = 0;
    if (!str_int(param, "num_class", &num_class) || num_class > 1) return refuse(b, "multi-class");
    if (json_object_get(param, "num_target") != NULL &&
        (!str_int(param, "num_target", &num_target) || num_target != 1)) {
        return refuse(b, "several targets");
    }
    if (!str_int(param, "num_feature", &num_feature) || num_feature != RISK_FEATURE_COUNT) {
        return refuse(b, "num_feature is not %d", RISK_FEATURE_COUNT);
    }
    const char *const gb_keys[] = {"gradient_booster", "name"};
    const char *booster = json_string_value(path_get(learner, gb_keys, 2));
    if (booster == NULL || strcmp(booster, "gbtree") != 0) {
        return refuse(b, "booster %s", booster ? booster : "(none)");
    }
    return base_margin_of(learner, b);
}

static bool tree_arrays(const json_t *tree, json_tree *t, build *b) {
    int64_t nodes = 0;
    if (!str_int(json_object_get(tree, "tree_param"), "num_nodes", &nodes) || nodes < 1) {
        return refuse(b, "a tree without nodes");
    }
    t->node_count = (size_t)nodes;
    t->lefts = json_object_get(tree, "left_children");
    t->rights = json_object_get(tree, "right_children");
    t->features = json_object_get(tree, "split_indices");
    t->conds = json_object_get(tree, "split_conditions");
    t->default_left = json_object_get(tree, "default_left");
    const json_t *arrays[] = {t->lefts, t->rights, t->features, t->conds, t->default_left};
    for (size_t i = 0; i < sizeof(arrays) / sizeof(arrays[0]); i++) {
        if (json_array_size(arrays[i]) != t->node_count) return refuse(b, "a tree's arrays");
    }
    const json_t *types = json_object_get(tree, "split_type");
    for (size_t i = 0; i < json_array_size(types); i++) {
        int64_t type = 0;
        if (!int_at(types, i, &type) || type != 0) return refuse(b, "categorical splits");
    }
    if (json_array_size(json_object_get(tree, "categories_nodes")) != 0) {
        return refuse(b, "categorical splits");
    }
    return true;
}

static bool node_reserve(build *b, uint32_t count, uint32_t *first) {
    risk_trees_t *t = b->trees;
    if (count > RISK_MODEL_NODES_MAX - t->node_count) {
        return refuse(b, "more than %u nodes", (unsigned)RISK_MODEL_NODES_MAX);
    }
    if (t->node_count + count > b->nodes_cap) {
        uint32_t cap = b->nodes_cap ? b->nodes_cap : 1024;
        while (cap < t->node_count + count) cap = cap > RISK_MODEL_NODES_MAX / 2 ? RISK_MODEL_NODES_MAX : cap * 2;
        walk_node *nodes = realloc(t->nodes, (size_t)cap * sizeof(walk_node));
        if (nodes == NULL) return refuse(b, "out of memory");
        t->nodes = nodes;
        b->nodes_cap = cap;
    }
    *first = t->node_count;
    t->node_count += count;
    return true;
}

/* Copies JSON node 'nid' into slot 'slot', then its children (depth first). 'budget'
 * counts nodes left to visit: a malformed tree with a cycle runs out of it. */
static bool node_copy(build *b, const json_tree *jt, int64_t nid, uint32_t slot, uint32_t depth,
                      size_t *budget) {
    if (nid < 0 || (size_t)nid >= jt->node_count || *budget == 0) return refuse(b, "a tree's links");
    if (depth > RISK_MODEL_DEPTH_MAX) return refuse(b, "a tree deeper than %d", RISK_MODEL_DEPTH_MAX);
    (*budget)--;
    int64_t left = 0, right = 0, feature = 0, default_left = 0;
    float cond = 0;
    if (!int_at(jt->lefts, (size_t)nid, &left) || !int_at(jt->rights, (size_t)nid, &right) ||
        !int_at(jt->features, (size_t)nid, &feature) ||
        !int_at(jt->default_left, (size_t)nid, &default_left) ||
        !float_of(json_array_get(jt->conds, (size_t)nid), &cond)) {
        return refuse(b, "a tree's node values");
    }
    walk_node n = {.cond = cond, .leaf = left == -1};
    if (!n.leaf) {
        if (feature < 0 || feature >= RISK_FEATURE_COUNT) return refuse(b, "split feature %lld", (long long)feature);
        n.feature = (uint16_t)feature;
        n.default_left = default_left != 0;
        if (!node_reserve(b, 2, &n.left)) return false;
    }
    b->trees->nodes[slot] = n; /* after node_reserve: it may move the array */
    if (n.leaf) return true;
    return node_copy(b, jt, left, n.left, depth + 1, budget) &&
           node_copy(b, jt, right, n.left + 1, depth + 1, budget);
}

static bool trees_copy(const json_t *model, build *b) {
    const json_t *trees = json_object_get(model, "trees");
    const json_t *info = json_object_get(model, "tree_info");
    size_t count = json_array_size(trees);
    if (count == 0 || json_array_size(info) != count) return refuse(b, "no trees");
    if (count > RISK_MODEL_NODES_MAX) return refuse(b, "too many trees");
    b->trees->roots = calloc(count, sizeof(uint32_t));
    if (b->trees->roots == NULL) return refuse(b, "out of memory");
    for (size_t i = 0; i < count; i++) {
        int64_t group = 0;
        if (!int_at(info, i, &group) || group != 0) return refuse(b, "several output groups");
        json_tree jt;
        if (!tree_arrays(json_array_get(trees, i), &jt, b)) return false;
        size_t budget = jt.node_count;
        uint32_t root = 0;
        if (!node_reserve(b, 1, &root) || !node_copy(b, &jt, 0, root, 0, &budget)) return false;
        b->trees->roots[i] = root;
        b->trees->tree_count++;
    }
    return true;
}

pc_status risk_trees_from_json(const char *json, size_t json_bytes, risk_trees_t **out, char *why,
                               size_t why_bytes) {
    *out = NULL;
    if (why != NULL && why_bytes > 0) why[0] = '\0';
    risk_trees_t *t = calloc(1, sizeof(*t));
    if (t == NULL) return PC_NO_MEMORY;
    build b = {t, 0, why, why_bytes};
    json_error_t err;
    json_t *root = json_loadb(json, json_bytes, 0, &err);
    const json_t *learner = json_object_get(root, "learner");
    const char *const model_keys[] = {"gradient_booster", "model"};
    bool ok = root != NULL ? learner_supported(learner, &b) : refuse(&b, "JSON: %s", err.text);
    ok = ok && trees_copy(path_get(learner, model_keys, 2), &b);
    json_decref(root);
    if (!ok) {
        risk_trees_free(t);
        return PC_RISK_MODEL_INVALID;
    }
    *out = t;
    return PC_OK;
}

void risk_trees_free(risk_trees_t *t) {
    if (t == NULL) return;
    free(t->roots);
    free(t->nodes);
    free(t);
}

/* XGBoost 1.7's common::Sigmoid, operation for operation. */
static float xgb_sigmoid(float x) {
    const float eps = 1e-16f;
    float neg = -x;
    float e = 88.7f < neg ? 88.7f : neg; /* std::min(-x, 88.7f) */
    float denom = expf(e) + 1.0f + eps;
    return 1.0f / denom;
}

float risk_trees_margin(const risk_trees_t *t, const float row[RISK_FEATURE_COUNT]) {
    float margin = t->base_margin;
    const walk_node *nodes = t->nodes;
    for (uint32_t i = 0; i < t->tree_count; i++) {
        const walk_node *n = &nodes[t->roots[i]];
        while (!n->leaf) {
            float x = row[n->feature];
            uint32_t right = isnan(x) ? !n->default_left : !(x < n->cond);
            n = &nodes[n->left + right];
        }
        margin += n->cond;
    }
    return margin;
}

float risk_trees_score(const risk_trees_t *t, const float row[RISK_FEATURE_COUNT]) {
    return xgb_sigmoid(risk_trees_margin(t, row));
}

uint32_t risk_trees_count(const risk_trees_t *t) { return t->tree_count; }

uint32_t risk_trees_nodes(const risk_trees_t *t) { return t->node_count; }

/* Every split threshold of feature 'feature' (probes at the model's boundaries). */
uint32_t risk_trees_thresholds(const risk_trees_t *t, uint32_t feature, float *out, uint32_t max) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < t->node_count && n < max; i++) {
        if (!t->nodes[i].leaf && t->nodes[i].feature == feature) out[n++] = t->nodes[i].cond;
    }
    return n;
}
