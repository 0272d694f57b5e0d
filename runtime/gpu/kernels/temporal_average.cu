// I'(t) = (I(t) + I(t-1)) / 2 written into the ring buffer slot for frame t, and I(t) kept as the
// previous frame for the next call. first != 0 at a clip start: I(t-1) := I(t).
extern "C" __global__ void temporal_average(const float* __restrict__ current, float* __restrict__ previous,
                                            float* __restrict__ averaged, int count, int first)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    const float now = current[i];
    const float before = first ? now : previous[i];
    averaged[i] = (now + before) * 0.5f;
    previous[i] = now;
}
