/* Optim4RL's learned optimizer (optimizer.py's flat_step: linear heads, hidden 8) over N parameter elements,
 * float32, with its backward: the same numbers as the torch maths to float rounding, at the cost of the
 * arithmetic instead of about thirty passes over [N, 8] tensors a step (and sixty back).
 *
 * Elements go through in blocks of B = 16, one vector lane each (gcc's vector extension: every operation on a
 * vf is lane-wise), so the arithmetic vectorises across elements; hidden states stay [N, 8] row-major
 * outside (the layout the rule's state and checkpoints use).  A partial last block is padded with zeros,
 * which contribute nothing.
 *
 * A gradient g is read as x = scale g, clipped to [-1, 1] with clip (Optim4RLConfig's input_scale and
 * clip_inputs); the sign comes from g.
 *
 * Weights: one flat buffer, both GRUs in weight_shapes order, each W_ih [24], W_hh [24, 8], b_ih [24], b_hh
 * [24], the head's weight [8] and bias [1]; gates r, z, n as torch's GRUCell.  Weight gradients are summed
 * over the elements lane by lane in float for SUPER blocks (a chunk) at a time, then into the caller's double
 * buffer, chunk by chunk in order.
 *
 * Threads share the work a run of chunks each (see "Threads" below); the numbers do not depend on how many.
 * The step is at the machine's arithmetic bound (benchmarks/optim4rl/kernel_bound.py: its time is the FMA
 * slots of the vector operations its maths counts), so threads are what makes it faster here.
 */
#if defined(__AVX512F__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("prefer-vector-width=512") /* a block is one 512-bit vector: twice the speed of 256 here */
#endif

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fast_math.h"

#define H 8
#define G (3 * H)
#define B 16
#define PER_GRU (G + G * H + G + G + H + 1)
#define SUPER 64
#define MAX_STEPS 16

typedef float vf __attribute__((vector_size(B * sizeof(float))));
/* B lanes: one element of the block each; arithmetic on vf is lane-wise, a float operand is broadcast */

typedef struct {
    const float *w_ih, *w_hh, *b_ih, *b_hh, *hw;
    float hb;
} Gru;

typedef struct {
    vf r[H], z[H], n[H], ghn[H], hn[H], o;
} Gates;

typedef struct {
    vf w_ih[G], w_hh[G][H], b_ih[G], b_hh[G], hw[H], hb;
} Acc;

typedef struct {
    vf x[2], sign, h[2][H];
} Inputs;

static Gru gru_at(const float *w) {
    const Gru g = {w, w + G, w + G + G * H, w + 2 * G + G * H, w + 3 * G + G * H, w[3 * G + G * H + H]};
    return g;
}

static int64_t lanes(int64_t n, int64_t e0) { return n - e0 < B ? n - e0 : B; }

/* One block's GRU inputs, x = clip(scale g) and x^2, and sign(g) (of g itself); missing lanes are 0. */
static void load_inputs(int64_t n, int64_t e0, const float *g, float scale, int clip, Inputs *in) {
    in->x[0] = in->x[1] = in->sign = (vf){0};
    for (int64_t b = 0; b < lanes(n, e0); b++) {
        const float v = g[e0 + b], u = v * scale;
        const float x = clip ? (u < -1.0f ? -1.0f : (u > 1.0f ? 1.0f : u)) : u;
        in->x[0][b] = x, in->x[1][b] = x * x;
        in->sign[b] = (float)((v > 0.0f) - (v < 0.0f));
    }
}

/* One block of a [n] buffer into a vector; NULL or missing lanes: 0. */
static vf load_vector(int64_t n, int64_t e0, const float *src) {
    vf out = {0};
    if (src)
        for (int64_t b = 0; b < lanes(n, e0); b++) out[b] = src[e0 + b];
    return out;
}

/* One block of a [n, 8] buffer (hidden states or their gradients) into [8] vectors; NULL or missing lanes: 0. */
static void load_rows(int64_t n, int64_t e0, const float *src, vf out[H]) {
    for (int k = 0; k < H; k++) out[k] = (vf){0};
    if (src)
        for (int64_t b = 0; b < lanes(n, e0); b++)
            for (int k = 0; k < H; k++) out[k][b] = src[(e0 + b) * H + k];
}

static void store_rows(int64_t n, int64_t e0, const vf h[H], float *out) {
    for (int64_t b = 0; b < lanes(n, e0); b++)
        for (int k = 0; k < H; k++) out[(e0 + b) * H + k] = h[k][b];
}

static void load(int64_t n, int64_t e0, const float *g, const float *h1, const float *h2, float scale, int clip,
                 Inputs *in) {
    load_inputs(n, e0, g, scale, clip, in);
    load_rows(n, e0, h1, in->h[0]);
    load_rows(n, e0, h2, in->h[1]);
}

/* Every hidden unit's gates from their pre-activations, and the new state, over [H][B] (a loop over all of
 * them, which gcc vectorises with the fast functions inlined, H independent chains deep; kept out of line,
 * where it would not vectorise). */
__attribute__((noinline)) static void activate(const float *restrict ar, const float *restrict az, const float *restrict an,
                                               const float *restrict gh, const float *restrict h, float *restrict r,
                                               float *restrict z, float *restrict c, float *restrict hn) {
    for (int i = 0; i < H * B; i++) {
        const float ri = fast_sigmoid(ar[i]), zi = fast_sigmoid(az[i]), ci = fast_tanh(an[i] + ri * gh[i]);
        r[i] = ri, z[i] = zi, c[i] = ci;
        hn[i] = ci + zi * (h[i] - ci);
    }
}

/* One GRU step and its head on a block: h' and o, with the gates the backward needs. */
static void gru_forward(const Gru *w, vf x, const vf h[H], Gates *s) {
    vf ar[H], az[H], an[H];
    for (int j = 0; j < H; j++) {
        const int rr = j, zz = H + j, nn = 2 * H + j;
        vf r = w->b_ih[rr] + w->b_hh[rr] + w->w_ih[rr] * x;
        vf z = w->b_ih[zz] + w->b_hh[zz] + w->w_ih[zz] * x;
        vf gh = w->b_hh[nn] + (vf){0};
        for (int k = 0; k < H; k++) {
            r += w->w_hh[rr * H + k] * h[k];
            z += w->w_hh[zz * H + k] * h[k];
            gh += w->w_hh[nn * H + k] * h[k];
        }
        ar[j] = r, az[j] = z, an[j] = w->b_ih[nn] + w->w_ih[nn] * x, s->ghn[j] = gh;
    }
    activate((float *)ar, (float *)az, (float *)an, (float *)s->ghn, (const float *)h, (float *)s->r, (float *)s->z,
             (float *)s->n, (float *)s->hn);
    vf o = w->hb + (vf){0};
    for (int k = 0; k < H; k++) o += w->hw[k] * s->hn[k];
    s->o = o;
}

/* step = -sign(g) exp(o1) / sqrt(exp(o2) + eps), and (d1, d2 not NULL) d step / d o1 and d step / d o2. */
__attribute__((noinline)) static void step_of(const float *restrict sign, const float *restrict o1, const float *restrict o2,
                                              float eps, float *restrict step, float *restrict d1, float *restrict d2) {
    for (int b = 0; b < B; b++) {
        const float e1 = fast_exp(o1[b]), e2 = fast_exp(o2[b]);
        const float v = -sign[b] * e1 / sqrtf(e2 + eps);
        step[b] = v, d1[b] = v, d2[b] = -0.5f * v * e2 / (e2 + eps);
    }
}

static vf step_vector(const Inputs *in, const Gates *s1, const Gates *s2, float eps, vf *d1, vf *d2) {
    vf v, a, b;
    step_of((const float *)&in->sign, (const float *)&s1->o, (const float *)&s2->o, eps, (float *)&v, (float *)&a, (float *)&b);
    if (d1) *d1 = a, *d2 = b;
    return v;
}

/* One GRU's backward on a block: dhn (the gradient of h'; the head's term is added here) -> dh (of h), the
 * weights' gradients into acc. */
static void gru_backward(const Gru *w, vf x, const vf h[H], const Gates *s, vf dout, vf dhn[H], vf dh[H], Acc *acc) {
    acc->hb += dout;
    for (int k = 0; k < H; k++) acc->hw[k] += dout * s->hn[k], dhn[k] += dout * w->hw[k], dh[k] = (vf){0};
    for (int j = 0; j < H; j++) {
        const int rr = j, zz = H + j, nn = 2 * H + j;
        const vf d = dhn[j], r = s->r[j], z = s->z[j], c = s->n[j];
        dh[j] += d * z;
        const vf dan = d * (1.0f - z) * (1.0f - c * c), dgn = dan * r;
        const vf dar = dan * s->ghn[j] * r * (1.0f - r), daz = d * (h[j] - c) * z * (1.0f - z);
        acc->b_ih[rr] += dar, acc->b_ih[zz] += daz, acc->b_ih[nn] += dan;
        acc->w_ih[rr] += dar * x, acc->w_ih[zz] += daz * x, acc->w_ih[nn] += dan * x;
        acc->b_hh[rr] += dar, acc->b_hh[zz] += daz, acc->b_hh[nn] += dgn;
        for (int k = 0; k < H; k++) {
            acc->w_hh[rr][k] += dar * h[k], acc->w_hh[zz][k] += daz * h[k], acc->w_hh[nn][k] += dgn * h[k];
            dh[k] += w->w_hh[rr * H + k] * dar + w->w_hh[zz * H + k] * daz + w->w_hh[nn * H + k] * dgn;
        }
    }
}

/* The lane sums of acc into dw (one GRU's PER_GRU entries, weight_shapes order); acc is zeroed. */
static void flush(Acc *acc, double *dw) {
    const vf *v = (const vf *)acc;
    for (int i = 0; i < PER_GRU; i++) {
        double sum = 0.0;
        for (int b = 0; b < B; b++) sum += v[i][b];
        dw[i] += sum;
    }
    memset(acc, 0, sizeof *acc);
}

/* Threads.  Elements go in chunks of SUPER blocks; a thread takes a contiguous run of chunks.  Weight gradients
 * are summed per chunk (into its own row of a [chunks, 2 PER_GRU] buffer when threads share the work) and
 * the rows added into dw in chunk order afterwards: the order a single thread adds them in, so any number of
 * threads gives the same bits. */
#define MAX_THREADS 64

typedef void (*Work)(const void *args, int64_t c0, int64_t c1);

typedef struct {
    Work work;
    const void *args;
    int64_t c0, c1;
} Job;

static void *run_job(void *job) {
    const Job *j = job;
    j->work(j->args, j->c0, j->c1);
    return NULL;
}

static int64_t chunks_of(int64_t n) { return (n + SUPER * B - 1) / (SUPER * B); }

static int clamp_threads(int threads, int64_t chunks) {
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads > chunks) threads = (int)chunks;
    return threads < 1 ? 1 : threads;
}

/* work over chunks [0, chunks) on `threads` threads (this one among them); a thread that cannot start has its
 * share run here. */
static void parallel(Work work, const void *args, int64_t chunks, int threads) {
    Job jobs[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS];
    for (int t = 0; t < threads; t++) jobs[t] = (Job){work, args, chunks * t / threads, chunks * (t + 1) / threads};
    for (int t = 1; t < threads; t++) started[t] = pthread_create(&ids[t], NULL, run_job, &jobs[t]) == 0;
    run_job(&jobs[0]);
    for (int t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(ids[t], NULL);
        else
            run_job(&jobs[t]);
    }
}

/* Where a chunk's weight gradients go: its own zeroed row when threads share the work, else dw itself. */
typedef struct {
    double *dw, *rows;
} Sums;

static double *sums_for(const Sums *s, int64_t chunk) { return s->rows ? s->rows + chunk * 2 * PER_GRU : s->dw; }

/* Rows for `threads` threads over `chunks` chunks (NULL rows: one thread, or no memory, then one thread too). */
static Sums sums_open(double *dw, int64_t chunks, int *threads) {
    Sums s = {dw, NULL};
    if (*threads > 1) s.rows = calloc((size_t)chunks * 2 * PER_GRU, sizeof(double));
    if (!s.rows) *threads = 1;
    return s;
}

static void sums_close(Sums *s, int64_t chunks) {
    if (!s->rows) return;
    for (int64_t c = 0; c < chunks; c++)
        for (int i = 0; i < 2 * PER_GRU; i++) s->dw[i] += s->rows[c * 2 * PER_GRU + i];
    free(s->rows);
}

typedef struct {
    int64_t n, m;
    const float *const *g;
    const float *h1, *h2, *w, *dstep, *dh1, *dh2;
    float eps, scale, *step, *h1_out, *h2_out, *dh1_out, *dh2_out;
    int clip;
    Sums sums;
} Args;

static void step_chunks(const void *args, int64_t c0, int64_t c1) {
    const Args *a = args;
    const int64_t n = a->n;
    const Gru w1 = gru_at(a->w), w2 = gru_at(a->w + PER_GRU);
    Inputs in;
    Gates s1, s2;
    for (int64_t e0 = c0 * SUPER * B; e0 < n && e0 < c1 * SUPER * B; e0 += B) {
        load(n, e0, a->g[0], a->h1, a->h2, a->scale, a->clip, &in);
        gru_forward(&w1, in.x[0], in.h[0], &s1);
        gru_forward(&w2, in.x[1], in.h[1], &s2);
        const vf v = step_vector(&in, &s1, &s2, a->eps, NULL, NULL);
        for (int64_t b = 0; b < lanes(n, e0); b++) a->step[e0 + b] = v[b];
        store_rows(n, e0, s1.hn, a->h1_out);
        store_rows(n, e0, s2.hn, a->h2_out);
    }
}

static void backward_chunks(const void *args, int64_t c0, int64_t c1) {
    const Args *a = args;
    const int64_t n = a->n;
    const Gru w1 = gru_at(a->w), w2 = gru_at(a->w + PER_GRU);
    Acc acc[2];
    memset(acc, 0, sizeof acc);
    Inputs in;
    Gates s1, s2;
    vf d1, d2, dn1[H], dn2[H], dp1[H], dp2[H];
    for (int64_t c = c0; c < c1; c++) {
        for (int64_t e0 = c * SUPER * B; e0 < n && e0 < (c + 1) * SUPER * B; e0 += B) {
            load(n, e0, a->g[0], a->h1, a->h2, a->scale, a->clip, &in);
            gru_forward(&w1, in.x[0], in.h[0], &s1);
            gru_forward(&w2, in.x[1], in.h[1], &s2);
            step_vector(&in, &s1, &s2, a->eps, &d1, &d2);
            const vf ds = load_vector(n, e0, a->dstep);
            load_rows(n, e0, a->dh1, dn1);
            load_rows(n, e0, a->dh2, dn2);
            gru_backward(&w1, in.x[0], in.h[0], &s1, d1 * ds, dn1, dp1, &acc[0]);
            gru_backward(&w2, in.x[1], in.h[1], &s2, d2 * ds, dn2, dp2, &acc[1]);
            if (a->dh1_out) store_rows(n, e0, dp1, a->dh1_out);
            if (a->dh2_out) store_rows(n, e0, dp2, a->dh2_out);
        }
        double *dw = sums_for(&a->sums, c);
        flush(&acc[0], dw), flush(&acc[1], dw + PER_GRU);
    }
}

static void replay_chunks(const void *args, int64_t c0, int64_t c1) {
    const Args *a = args;
    const int64_t n = a->n, m = a->m;
    const Gru w1 = gru_at(a->w), w2 = gru_at(a->w + PER_GRU);
    Acc acc[2];
    Inputs in[MAX_STEPS];
    Gates s[MAX_STEPS][2];
    memset(acc, 0, sizeof acc);
    vf d1, d2, dn[2][H], dp[2][H];
    for (int64_t c = c0; c < c1; c++) {
        for (int64_t e0 = c * SUPER * B; e0 < n && e0 < (c + 1) * SUPER * B; e0 += B) {
            load(n, e0, a->g[0], a->h1, a->h2, a->scale, a->clip, &in[0]);
            for (int64_t k = 0; k < m; k++) {
                if (k > 0) { /* this step's gradient, the hidden states the last step left */
                    load_inputs(n, e0, a->g[k], a->scale, a->clip, &in[k]);
                    memcpy(in[k].h[0], s[k - 1][0].hn, sizeof in[k].h[0]);
                    memcpy(in[k].h[1], s[k - 1][1].hn, sizeof in[k].h[1]);
                }
                gru_forward(&w1, in[k].x[0], in[k].h[0], &s[k][0]);
                gru_forward(&w2, in[k].x[1], in[k].h[1], &s[k][1]);
            }
            const vf ds = load_vector(n, e0, a->dstep);
            memset(dn, 0, sizeof dn);
            for (int64_t k = m - 1; k >= 0; k--) {
                step_vector(&in[k], &s[k][0], &s[k][1], a->eps, &d1, &d2);
                gru_backward(&w1, in[k].x[0], in[k].h[0], &s[k][0], d1 * ds, dn[0], dp[0], &acc[0]);
                gru_backward(&w2, in[k].x[1], in[k].h[1], &s[k][1], d2 * ds, dn[1], dp[1], &acc[1]);
                memcpy(dn, dp, sizeof dn);
            }
        }
        double *dw = sums_for(&a->sums, c);
        flush(&acc[0], dw), flush(&acc[1], dw + PER_GRU);
    }
}

/* The entry points.  `threads`: how many may share the work (at most one per chunk of SUPER blocks). */

/* The rule on n elements: step [n] per unit of learning rate and the new hidden states [n, 8] (h1_out, h2_out may be
 * h1, h2: a block is read before it is written). */
void o4rl_step(int64_t n, const float *g, const float *h1, const float *h2, const float *w, float eps, float scale, int clip,
               float *step, float *h1_out, float *h2_out, int threads) {
    const Args a = {.n = n, .g = &g, .h1 = h1, .h2 = h2, .w = w, .eps = eps, .scale = scale, .clip = clip, .step = step,
                    .h1_out = h1_out, .h2_out = h2_out};
    parallel(step_chunks, &a, chunks_of(n), clamp_threads(threads, chunks_of(n)));
}

/* The backward of one o4rl_step from its inputs: the gradients of the step (dstep [n]) and of the new hidden
 * states (dh1, dh2 [n, 8]; NULL: zero) give those of the old hidden states (dh1_out, dh2_out; NULL: not
 * wanted) and add the weights' into dw [2 * PER_GRU] (double). */
void o4rl_step_backward(int64_t n, const float *g, const float *h1, const float *h2, const float *w, float eps, float scale,
                        int clip, const float *dstep, const float *dh1, const float *dh2, float *dh1_out, float *dh2_out,
                        double *dw, int threads) {
    const int64_t chunks = chunks_of(n);
    threads = clamp_threads(threads, chunks);
    Args a = {.n = n, .g = &g, .h1 = h1, .h2 = h2, .w = w, .eps = eps, .scale = scale, .clip = clip, .dstep = dstep,
              .dh1 = dh1, .dh2 = dh2, .dh1_out = dh1_out, .dh2_out = dh2_out, .sums = sums_open(dw, chunks, &threads)};
    parallel(backward_chunks, &a, chunks, threads);
    sums_close(&a.sums, chunks);
}

/* The meta-gradient of m steps from one start: sum_k adjoint . d step_k / d w, the k-th step reading the
 * gradients g[k] [n] and the hidden states the k-1 steps before left, from h1, h2 [n, 8] at the start.
 * Block by block: m steps forward keeping every gate (in cache), then m back; added into dw. */
void o4rl_replay(int64_t n, int64_t m, const float *const *g, const float *h1, const float *h2, const float *w, float eps,
                 float scale, int clip, const float *adjoint, double *dw, int threads) {
    if (m < 1 || m > MAX_STEPS) return; /* kernel.py refuses these */
    const int64_t chunks = chunks_of(n);
    threads = clamp_threads(threads, chunks);
    Args a = {.n = n, .m = m, .g = g, .h1 = h1, .h2 = h2, .w = w, .eps = eps, .scale = scale, .clip = clip,
              .dstep = adjoint, .sums = sums_open(dw, chunks, &threads)};
    parallel(replay_chunks, &a, chunks, threads);
    sums_close(&a.sums, chunks);
}
