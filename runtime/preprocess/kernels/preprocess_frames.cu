// The whole per-frame preprocessing reference (runtime/preprocess.py) in one launch, for a batch of
// independent streams (blockIdx.z = stream): luma of the raw uint8 frame, bilinear resize, the
// temporal rule, normalization, written straight into the network input. One launch instead of
// one per step because at these sizes the launches, not the arithmetic, cost the time.
//
// Raw frame formats (source_format): 0 gray (1 byte/pixel), 1 BGR (3), 2 BGRA (4), 3 NV12 luma
// plane with limited range expanded to 0..255 and rounded to uint8 (as runtime.preprocess.nv12_to_gray),
// 4 NV12 luma plane taken as full range.
// Resize: OpenCV INTER_LINEAR. The source taps and weights of every output column and row come
// from tables the host computes once as OpenCV does (coordinates in double precision, weights
// rounded to float): computed per pixel in float they drift by ~1e-5 px across a row, which is
// ~0.005 grey levels on a sharp edge.
// Temporal rules (temporal): 0 none <I_t>; 1 AVID triplet <I'_{t-4}, I'_{t-2}, I'_t> with
// I'_t = (I_t + I_{t-1}) / 2 kept in a ring of `slots` averaged frames per stream; 2 frame
// difference <I_t, I_t - I_{t-1}>. first != 0 at a clip start: I_{t-1} := I_t.
// FP16 output is stored as raw 16-bit words converted with one PTX instruction, so no CUDA headers
// are needed when NVRTC compiles this at run time.
typedef unsigned short half_bits;

template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ half_bits from_float<half_bits>(float v)
{
    half_bits h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    return h;
}

__device__ __forceinline__ float luma_at(const unsigned char* frame, int pitch, int y, int x, int source_format)
{
    if (source_format == 0) return (float)frame[(size_t)y * pitch + x];
    if (source_format == 1 || source_format == 2) {
        const unsigned char* p = frame + (size_t)y * pitch + (size_t)x * (source_format == 1 ? 3 : 4);
        return 0.114f * p[0] + 0.587f * p[1] + 0.299f * p[2];
    }
    const float value = (float)frame[(size_t)y * pitch + x];
    if (source_format == 4) return value;
    return fminf(fmaxf(rintf((value - 16.f) * (255.f / 219.f)), 0.f), 255.f);
}

template <typename T>
__device__ void preprocess(const unsigned char* __restrict__ source, long long source_stride, int source_pitch,
                           int source_format, const int* __restrict__ x_taps, const float* __restrict__ x_weights,
                           const int* __restrict__ y_taps, const float* __restrict__ y_weights,
                           float* __restrict__ previous, float* __restrict__ ring, int slots, int slot_now, int slot_a,
                           int slot_b, int temporal, int first, float mean, float inv_std, T* __restrict__ out,
                           long long out_stride, int height, int width)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    const int stream = blockIdx.z;
    if (x >= width || y >= height) return;
    const int pixels = height * width;
    const int i = y * width + x;
    const unsigned char* frame = source + (size_t)stream * source_stride;

    const int sx = x_taps[2 * x], sx1 = x_taps[2 * x + 1];
    const int sy = y_taps[2 * y], sy1 = y_taps[2 * y + 1];
    const float fx = x_weights[x], fy = y_weights[y];
    const float top = luma_at(frame, source_pitch, sy, sx, source_format) * (1.f - fx)
                    + luma_at(frame, source_pitch, sy, sx1, source_format) * fx;
    const float bottom = luma_at(frame, source_pitch, sy1, sx, source_format) * (1.f - fx)
                       + luma_at(frame, source_pitch, sy1, sx1, source_format) * fx;
    const float now = top * (1.f - fy) + bottom * fy;

    T* o = out + (size_t)stream * out_stride;
    if (temporal == 0) {
        o[i] = from_float<T>((now - mean) * inv_std);
        return;
    }
    float* last = previous + (size_t)stream * pixels;
    const float before = first ? now : last[i];
    last[i] = now;
    if (temporal == 2) {
        o[i] = from_float<T>((now - mean) * inv_std);
        o[pixels + i] = from_float<T>((now - before) * inv_std);
        return;
    }
    float* own = ring + (size_t)stream * slots * pixels;
    const float averaged = (now + before) * 0.5f;
    own[(size_t)slot_now * pixels + i] = averaged;
    const float older = slot_a == slot_now ? averaged : own[(size_t)slot_a * pixels + i];
    const float middle = slot_b == slot_now ? averaged : own[(size_t)slot_b * pixels + i];
    o[i] = from_float<T>((older - mean) * inv_std);
    o[pixels + i] = from_float<T>((middle - mean) * inv_std);
    o[2 * pixels + i] = from_float<T>((averaged - mean) * inv_std);
}

#define PREPROCESS_ARGS const unsigned char* source, long long source_stride, int source_pitch, int source_format, \
    const int* x_taps, const float* x_weights, const int* y_taps, const float* y_weights, float* previous, float* ring, \
    int slots, int slot_now, int slot_a, int slot_b, int temporal, int first, float mean, float inv_std
#define PREPROCESS_PASS source, source_stride, source_pitch, source_format, x_taps, x_weights, y_taps, y_weights, previous, \
    ring, slots, slot_now, slot_a, slot_b, temporal, first, mean, inv_std

extern "C" __global__ void preprocess_frames_f32(PREPROCESS_ARGS, float* out, long long out_stride, int height, int width)
{
    preprocess<float>(PREPROCESS_PASS, out, out_stride, height, width);
}

extern "C" __global__ void preprocess_frames_f16(PREPROCESS_ARGS, half_bits* out, long long out_stride, int height, int width)
{
    preprocess<half_bits>(PREPROCESS_PASS, out, out_stride, height, width);
}
