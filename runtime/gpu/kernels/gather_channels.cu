// Gathers normalized channels into the network input: out[c] = (slot_c - mean_c) / std for the
// three AVID slots <I'(t-4), I'(t-2), I'(t)>, or ALOCC's <I(t), I(t) - I(t-1)> (mean 0 for the
// difference channel). One name per output type (NVRTC resolves no C++ overloads). FP16 is stored
// as raw 16-bit words converted with one PTX instruction, so no CUDA headers are needed at run time.
typedef unsigned short half_bits;

template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ half_bits from_float<half_bits>(float v)
{
    half_bits h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    return h;
}

template <typename T>
__device__ void gather(const float* a, const float* b, const float* c, int channels, int difference,
                       float mean, float inv_std, T* out, int count)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    if (difference) {
        out[i] = from_float<T>((a[i] - mean) * inv_std);
        out[count + i] = from_float<T>((a[i] - b[i]) * inv_std);
        return;
    }
    out[i] = from_float<T>((a[i] - mean) * inv_std);
    if (channels > 1) out[count + i] = from_float<T>((b[i] - mean) * inv_std);
    if (channels > 2) out[2 * count + i] = from_float<T>((c[i] - mean) * inv_std);
}

extern "C" __global__ void gather_channels_f32(const float* a, const float* b, const float* c, int channels, int difference,
                                               float mean, float inv_std, float* out, int count)
{
    gather<float>(a, b, c, channels, difference, mean, inv_std, out, count);
}

extern "C" __global__ void gather_channels_f16(const float* a, const float* b, const float* c, int channels, int difference,
                                               float mean, float inv_std, half_bits* out, int count)
{
    gather<half_bits>(a, b, c, channels, difference, mean, inv_std, out, count);
}
