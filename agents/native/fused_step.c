/* One fused gradient of PPO's or A2C's loss for a small categorical MLP actor-critic, float32, row-major.
 *
 * The same numbers as agents.fused's NumPy step (heads_forward, fused_loss.policy_gradient, heads_backward)
 * to float rounding, in one call: the matrix products go to the BLAS NumPy itself uses (its sgemm is passed
 * in), the elementwise work runs in plain loops, so a step costs its arithmetic and one call instead of about
 * sixty array calls of a microsecond or more each.  The caller clips the gradient and applies the update.
 *
 * Parameters and gradients are flat buffers in agents.fused.layout order: for each hidden layer i the
 * actor's and the critic's weights [2, h_i, in_i], then their biases [2, h_i]; then the actor's output
 * layer [A, h], [A] and the critic's [1, h], [1].  tanh is Eigen's rational approximation (float32-accurate,
 * and it vectorises, unlike libm's tanhf).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fast_math.h"

typedef void (*sgemm_fn)(int order, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                         const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

static sgemm_fn sgemm = NULL;

void set_sgemm(void *fn) { sgemm = (sgemm_fn)fn; }

/* out[M, n] = act(in[M, k] @ w[n, k]^T + b) */
static void dense(const float *in, const float *w, const float *b, float *out, int64_t m, int64_t n, int64_t k, int tanh_act) {
    sgemm(ROW_MAJOR, NO_TRANS, TRANS, m, n, k, 1.0f, in, k, w, k, 0.0f, out, n);
    for (int64_t r = 0; r < m; r++) {
        float *row = out + r * n;
        if (tanh_act) {
            for (int64_t j = 0; j < n; j++) row[j] = fast_tanh(row[j] + b[j]);
        } else {
            for (int64_t j = 0; j < n; j++) {
                const float z = row[j] + b[j];
                row[j] = z > 0.0f ? z : 0.0f;
            }
        }
    }
}

static void column_sums(const float *g, float *out, int64_t m, int64_t n) {
    memset(out, 0, sizeof(float) * n);
    for (int64_t r = 0; r < m; r++)
        for (int64_t j = 0; j < n; j++) out[j] += g[r * n + j];
}

/* Both heads' hidden layers on obs [M, D] (dims as fused_step's), activations into acts [2, M, h_i] per layer;
 * returns the first parameter after them (the actor's output layer), the top inputs in top[2] and the hidden
 * layers' weights in weights[]. */
static const float *hidden_forward(const int64_t *dims, const float *params, const float *obs, float *acts,
                                   const float **top, const float **weights) {
    const int64_t m = dims[0], d = dims[1], depth = dims[3], tanh_act = dims[5];
    const int64_t *hidden = dims + 6;
    const float *p = params;
    top[0] = obs, top[1] = obs;
    int64_t in = d, offset = 0;
    for (int64_t i = 0; i < depth; i++) {
        const int64_t h = hidden[i];
        weights[i] = p;
        for (int k = 0; k < 2; k++) {
            float *out = acts + offset + k * m * h;
            dense(top[k], p + k * h * in, p + 2 * h * in + k * h, out, m, h, in, (int)tanh_act);
            top[k] = out;
        }
        p += 2 * h * in + 2 * h;
        offset += 2 * m * h;
        in = h;
    }
    return p;
}

static int64_t activation_floats(const int64_t *dims) {
    int64_t total = 0;
    for (int64_t i = 0; i < dims[3]; i++) total += 2 * dims[0] * dims[6 + i];
    return total;
}

/* The collector's step for M = B rows: copies obs into obs_out, and for each row draws the action by inverse CDF
 * from u (uniforms in [0, 1)), as agents.fused.FusedPolicy does, with its log-probability and the value. */
void policy_act(const int64_t *dims, const float *params, const float *obs, const float *u, float *obs_out,
                int64_t *action, float *value, float *logp) {
    const int64_t m = dims[0], d = dims[1], na = dims[2], depth = dims[3];
    const int64_t in = depth ? dims[6 + depth - 1] : d;
    float *acts = malloc(sizeof(float) * (activation_floats(dims) + m * na + 1));
    float *logits = acts + activation_floats(dims);
    const float *top[2], *weights[64];
    memcpy(obs_out, obs, sizeof(float) * m * d);
    const float *wa = hidden_forward(dims, params, obs, acts, top, weights);
    const float *ba = wa + na * in, *wc = ba + na, *bc = wc + in;
    sgemm(ROW_MAJOR, NO_TRANS, TRANS, m, na, in, 1.0f, top[0], in, wa, in, 0.0f, logits, na);
    for (int64_t r = 0; r < m; r++) {
        float *l = logits + r * na, highest = -INFINITY, cdf = 0.0f, v = bc[0];
        for (int64_t j = 0; j < na; j++) {
            l[j] += ba[j];
            highest = l[j] > highest ? l[j] : highest;
        }
        for (int64_t j = 0; j < na; j++) cdf += expf(l[j] - highest);
        const float target = u[r] * cdf;
        float below = 0.0f;
        int64_t a = 0;
        for (int64_t j = 0; j < na; j++) {  /* the count of cumulative sums below the target */
            below += expf(l[j] - highest);
            a += below < target;
        }
        a = a < na - 1 ? a : na - 1;
        action[r] = a;
        logp[r] = (l[a] - highest) - logf(cdf);
        for (int64_t j = 0; j < in; j++) v += top[1][r * in + j] * wc[j];
        value[r] = v;
    }
    free(acts);
}

/* dims: M, D, A, L, kind (1 PPO, 0 A2C), tanh (1) or relu (0), then h_0 .. h_{L-1}.
 * hp: clip, ent_coef, vf_coef.  rec: ratio, log_ratio, unclipped, clipped (PPO) or surrogate (A2C; the others
 * NULL), error, probs [M, A], logp_all [M, A] -- the rows agents.fused_loss.records keeps for one step.
 * Returns the gradient's global norm. */
double fused_step(const int64_t *dims, const float *params, float *grads, const float *obs, const int64_t *actions,
                  const float *old_logp, const float *adv, const float *ret, const double *hp, float *const *rec) {
    const int64_t m = dims[0], d = dims[1], na = dims[2], depth = dims[3], ppo = dims[4], tanh_act = dims[5];
    const int64_t *hidden = dims + 6;
    const float clip = (float)hp[0], ent_coef = (float)hp[1], vf_coef = (float)hp[2];
    int64_t widest = d, total = activation_floats(dims);
    for (int64_t i = 0; i < depth; i++) widest = hidden[i] > widest ? hidden[i] : widest;
    /* activations of both heads per layer, then two gradient scratch areas */
    float *acts = malloc(sizeof(float) * (total + 4 * m * widest + 2 * m * (na + 1)));
    float *g = acts + total, *g_next = g + 2 * m * widest, *g_policy = g_next + 2 * m * widest, *g_value = g_policy + m * na;
    const float *layer_in[2], *weights[64];
    const float *p = hidden_forward(dims, params, obs, acts, layer_in, weights);
    const int64_t in = depth ? hidden[depth - 1] : d;
    int64_t offset = total;
    const float *wa = p, *ba = p + na * in, *wc = ba + na, *bc = wc + in;
    /* the policy head's logits into logp_all, shifted and normalised; the value into g_value for now */
    float *probs = rec[6], *logp_all = rec[7];
    sgemm(ROW_MAJOR, NO_TRANS, TRANS, m, na, in, 1.0f, layer_in[0], in, wa, in, 0.0f, logp_all, na);
    for (int64_t r = 0; r < m; r++) {
        float *l = logp_all + r * na, *pr = probs + r * na, top = -INFINITY, sum = 0.0f, v = bc[0];
        for (int64_t j = 0; j < na; j++) {
            l[j] += ba[j];
            top = l[j] > top ? l[j] : top;
        }
        for (int64_t j = 0; j < na; j++) {
            l[j] -= top;
            pr[j] = expf(l[j]);
            sum += pr[j];
        }
        const float log_sum = logf(sum);
        for (int64_t j = 0; j < na; j++) {
            pr[j] /= sum;
            l[j] -= log_sum;
        }
        for (int64_t j = 0; j < in; j++) v += layer_in[1][r * in + j] * wc[j];
        rec[5][r] = v - ret[r];  /* the value error */
    }
    /* d loss / d logits and d loss / d value */
    const float inv_m = 1.0f / (float)m;
    for (int64_t r = 0; r < m; r++) {
        const float *l = logp_all + r * na, *pr = probs + r * na;
        const float logp = l[actions[r]];
        float weight;
        if (ppo) {
            const float log_ratio = logp - old_logp[r], ratio = expf(log_ratio);
            const float unclipped = ratio * adv[r];
            const float bounded = ratio < 1.0f - clip ? 1.0f - clip : (ratio > 1.0f + clip ? 1.0f + clip : ratio);
            const float clipped = bounded * adv[r];
            rec[0][r] = ratio, rec[1][r] = log_ratio, rec[2][r] = unclipped, rec[3][r] = clipped;
            weight = unclipped <= clipped ? unclipped * inv_m : 0.0f;
        } else {
            rec[4][r] = logp * adv[r];
            weight = adv[r] * inv_m;
        }
        float *gr = g_policy + r * na;
        if (ent_coef != 0.0f) {
            float entropy = 0.0f;
            for (int64_t j = 0; j < na; j++) entropy -= pr[j] * l[j];
            for (int64_t j = 0; j < na; j++) gr[j] = pr[j] * ((l[j] + entropy) * (ent_coef * inv_m) + weight);
        } else {
            for (int64_t j = 0; j < na; j++) gr[j] = pr[j] * weight;
        }
        gr[actions[r]] -= weight;
        g_value[r] = rec[5][r] * (vf_coef * inv_m);
    }
    /* the output layers' gradients, after the hidden layers' in the flat buffer */
    float *gwa = grads + (p - params), *gba = gwa + na * in, *gwc = gba + na, *gbc = gwc + in;
    sgemm(ROW_MAJOR, TRANS, NO_TRANS, na, in, m, 1.0f, g_policy, na, layer_in[0], in, 0.0f, gwa, in);
    column_sums(g_policy, gba, m, na);
    memset(gwc, 0, sizeof(float) * in);
    gbc[0] = 0.0f;
    for (int64_t r = 0; r < m; r++) {
        for (int64_t j = 0; j < in; j++) gwc[j] += g_value[r] * layer_in[1][r * in + j];
        gbc[0] += g_value[r];
    }
    if (depth > 0) {
        /* d loss / d top activations of both heads, [2, M, h] */
        sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, m, in, na, 1.0f, g_policy, na, wa, in, 0.0f, g, in);
        for (int64_t r = 0; r < m; r++)
            for (int64_t j = 0; j < in; j++) g[m * in + r * in + j] = g_value[r] * wc[j];
    }
    /* the gradient buffer's hidden-layer part, walked back from the top layer */
    int64_t goff = 0;
    int64_t starts[64];
    for (int64_t i = 0; i < depth; i++) {
        starts[i] = goff;
        const int64_t h = hidden[i], lin = i ? hidden[i - 1] : d;
        goff += 2 * h * lin + 2 * h;
    }
    for (int64_t i = depth - 1; i >= 0; i--) {
        const int64_t h = hidden[i], lin = i ? hidden[i - 1] : d;
        offset -= 2 * m * h;
        float *gw = grads + starts[i], *gb = gw + 2 * h * lin;
        for (int k = 0; k < 2; k++) {
            const float *act = acts + offset + k * m * h;
            float *gk = g + k * m * h;
            for (int64_t e = 0; e < m * h; e++) gk[e] *= tanh_act ? 1.0f - act[e] * act[e] : (act[e] > 0.0f ? 1.0f : 0.0f);
            const float *below = i ? acts + offset - 2 * m * lin + k * m * lin : obs;
            sgemm(ROW_MAJOR, TRANS, NO_TRANS, h, lin, m, 1.0f, gk, h, below, lin, 0.0f, gw + k * h * lin, lin);
            column_sums(gk, gb + k * h, m, h);
            if (i) sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, m, lin, h, 1.0f, gk, h, weights[i] + k * h * lin, lin, 0.0f,
                         g_next + k * m * lin, lin);
        }
        float *swap = g;
        g = g_next, g_next = swap;
    }
    free(acts);
    int64_t size = (wc - params) + in + 1;
    double norm = 0.0;
    for (int64_t e = 0; e < size; e++) norm += (double)grads[e] * grads[e];
    return sqrt(norm);
}
