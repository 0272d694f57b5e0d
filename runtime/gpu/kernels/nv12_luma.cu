// The luma plane of an NV12 frame (what Jetson cameras deliver) as a gray uint8 image. NV12 luma
// is usually limited range (16..235); full_range == 0 expands it to 0..255 so it matches the
// luma of the same scene delivered as BGR.
extern "C" __global__ void nv12_luma(const unsigned char* __restrict__ y_plane, int height, int width, int pitch,
                                     int full_range, unsigned char* __restrict__ gray)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= width || y >= height) return;
    const float value = (float)y_plane[(size_t)y * pitch + x];
    const float expanded = full_range ? value : (value - 16.f) * (255.f / 219.f);
    gray[(size_t)y * width + x] = (unsigned char)fminf(fmaxf(rintf(expanded), 0.f), 255.f);
}
