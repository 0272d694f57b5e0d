// Luma + bilinear resize of a uint8 frame into float32, matching the numpy reference
// (runtime/preprocess.py): BT.601 luma of B, G, R then OpenCV INTER_LINEAR (half-pixel centres,
// source index clamped at the borders as cv::resize does).
extern "C" __global__ void gray_resize_u8(const unsigned char* __restrict__ src, int src_h, int src_w, int src_pitch,
                                          int channels, float* __restrict__ dst, int dst_h, int dst_w)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dst_w || y >= dst_h) return;

    const float scale_x = (float)src_w / (float)dst_w;
    const float scale_y = (float)src_h / (float)dst_h;
    float fx = ((float)x + 0.5f) * scale_x - 0.5f;
    float fy = ((float)y + 0.5f) * scale_y - 0.5f;
    int sx = (int)floorf(fx);
    int sy = (int)floorf(fy);
    fx -= (float)sx;
    fy -= (float)sy;
    if (sx < 0) { fx = 0.f; sx = 0; }
    if (sy < 0) { fy = 0.f; sy = 0; }
    if (sx >= src_w - 1) { fx = 0.f; sx = src_w - 1; }
    if (sy >= src_h - 1) { fy = 0.f; sy = src_h - 1; }
    const int sx1 = min(sx + 1, src_w - 1);
    const int sy1 = min(sy + 1, src_h - 1);

    float taps[4];
    const int xs[2] = {sx, sx1};
    const int ys[2] = {sy, sy1};
    for (int j = 0; j < 2; ++j) {
        for (int i = 0; i < 2; ++i) {
            const unsigned char* p = src + (size_t)ys[j] * src_pitch + (size_t)xs[i] * channels;
            taps[j * 2 + i] = channels >= 3 ? 0.114f * p[0] + 0.587f * p[1] + 0.299f * p[2] : (float)p[0];
        }
    }
    const float top = taps[0] * (1.f - fx) + taps[1] * fx;
    const float bottom = taps[2] * (1.f - fx) + taps[3] * fx;
    dst[(size_t)y * dst_w + x] = top * (1.f - fy) + bottom * fy;
}
