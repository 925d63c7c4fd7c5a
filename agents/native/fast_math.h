/* Float32 tanh and exp that vectorise (libm's tanhf and expf do not, in gcc's loops), for the native kernels. */
#ifndef HYPERRL_FAST_MATH_H
#define HYPERRL_FAST_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float fast_tanh(float x) {
    /* Eigen's generic_fast_tanh_float: a 13/6 rational fit on [-7.9, 7.9] (saturated outside) */
    const float clamp = 7.90531110763549805f;
    x = x < -clamp ? -clamp : (x > clamp ? clamp : x);
    const float x2 = x * x;
    float p = -2.76076847742355e-16f;
    p = p * x2 + 2.00018790482477e-13f;
    p = p * x2 + -8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    p = p * x;
    float q = 1.19825839466702e-06f;
    q = q * x2 + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    return p / q;
}

static inline float fast_sigmoid(float x) { return 0.5f + 0.5f * fast_tanh(0.5f * x); }

static inline float fast_exp(float x) {
    /* exp(x) = 2^k exp(r), k = round(x / ln 2) (by the 1.5 * 2^23 trick: floorf does not vectorise), r = x - k ln 2
     * in two parts (Cody-Waite), exp(r) by Cephes' degree-7 polynomial (about 1 ulp).  x is clamped to
     * [-87.3, 88.3]: finite where expf overflows to inf. */
    x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
    const float t = x * 1.44269504088896341f + 12582912.0f; /* t's low mantissa bits hold k */
    const float k = t - 12582912.0f;
    const float r = (x - k * 0.693359375f) - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits - 0x4B400000 + 127) << 23; /* 2^k */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

#endif
