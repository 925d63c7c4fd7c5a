/* The machine's peak float32 FMA rate on one thread, in the vector width the optimizer's kernel uses (16 lanes,
 * gcc's vector extension): 12 independent chains, enough to cover the FMA latency, for `iterations` rounds.
 * Returns lane-FMAs per second; kernel_bound.py divides the kernel's time by it. */
#include <stdint.h>
#include <time.h>

typedef float vf __attribute__((vector_size(64)));

double fma_lanes_per_second(int64_t iterations) {
    vf a[12];
    for (int i = 0; i < 12; i++) a[i] = (vf){0} + (0.001f * i);
    const vf m = (vf){0} + 0.9999f, c = (vf){0} + 0.0001f;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int64_t it = 0; it < iterations; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = a[i] * m + c;
        __asm__ volatile("" : "+v"(a[0]), "+v"(a[1]), "+v"(a[2]), "+v"(a[3]), "+v"(a[4]), "+v"(a[5])); /* kept */
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    float sink = 0.0f;
    for (int i = 0; i < 12; i++) sink += a[i][0];
    const double seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    return (double)iterations * 12 * 16 / seconds + 0.0 * sink;
}
