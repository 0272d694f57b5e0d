// ALOCC patch batch: F frames of (C, H, W) network input -> (F * P, C, s, s), frame-major, then
// row-major over the patch grid whose origins are given in tops[rows] and lefts[cols]. Same element type in and out; FP16 moves as raw
// 16-bit words (no conversion, no CUDA headers needed).
typedef unsigned short half_bits;

template <typename T>
__device__ void extract(const T* __restrict__ image, int channels, int height, int width, const int* __restrict__ tops,
                        const int* __restrict__ lefts, int rows, int cols, int size, T* __restrict__ out)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;  // pixel inside the patch, flattened
    const int patch = blockIdx.y % (rows * cols);
    const int frame = blockIdx.y / (rows * cols);
    const int channel = blockIdx.z;
    if (x >= size * size || channel >= channels) return;
    const int py = x / size, px = x % size;
    const int top = tops[patch / cols], left = lefts[patch % cols];
    const size_t src = (((size_t)frame * channels + channel) * height + top + py) * width + left + px;
    const size_t dst = ((((size_t)blockIdx.y) * channels + channel) * size + py) * size + px;
    out[dst] = image[src];
}

extern "C" __global__ void extract_patches_f32(const float* image, int channels, int height, int width, const int* tops,
                                               const int* lefts, int rows, int cols, int size, float* out)
{
    extract<float>(image, channels, height, width, tops, lefts, rows, cols, size, out);
}

extern "C" __global__ void extract_patches_f16(const half_bits* image, int channels, int height, int width, const int* tops,
                                               const int* lefts, int rows, int cols, int size, half_bits* out)
{
    extract<half_bits>(image, channels, height, width, tops, lefts, rows, cols, size, out);
}
