// Runs the float4 NaN-keeping max / min kernels of vec_nan.so (benchmarks/gpu_check.py) on
// GPU 0 and checks every lane against max / min with NaN propagated (ONNX Runtime's rule):
// mcc.build.nan's vector form (CUDA C has no != on float4), which mcc's default GPU
// schedules do not emit for whole models (tuned ones may), so it is built here directly.
//   vec_nan LIBDIR vec_nan.so   (LIBDIR: the one with libtvm_runtime_cuda.so)
#include <dlfcn.h>
#include <tvm/ffi/container/shape.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/dtype.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

namespace ffi = tvm::ffi;

int main(int argc, char** argv) {
  if (argc < 3) { std::fprintf(stderr, "usage: vec_nan LIBDIR vec_nan.so\n"); return 2; }
  std::string cuda = std::string(argv[1]) + "/libtvm_runtime_cuda.so";
  if (!dlopen(cuda.c_str(), RTLD_NOW | RTLD_GLOBAL)) {
    std::fprintf(stderr, "error: %s\n", dlerror()); return 1;
  }
  const int n = 4096;
  std::vector<float> x(n), y(n);
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = INFINITY;
  for (int i = 0; i < n; ++i) {
    x[i] = std::sin(0.37f * i) * 3; y[i] = std::cos(0.11f * i) * 3;
    if (i % 7 == 0) x[i] = nan;          // NaN in a, in b, in both, on every lane
    if (i % 5 == 0) y[i] = nan;
    if (i % 11 == 0) x[i] = (i % 2) ? inf : -inf;
    if (i % 13 == 0) y[i] = (i % 3) ? inf : -inf;
  }
  ffi::Module mod = ffi::Module::LoadFromFile(argv[2]);
  ffi::Function f = mod->GetFunction("main").value();
  auto alloc = *ffi::Function::GetGlobal("runtime.TVMTensorAllocWithScope");
  auto to_dev = *ffi::Function::GetGlobal("runtime.TVMTensorCopyFromBytes");
  auto to_host = *ffi::Function::GetGlobal("runtime.TVMTensorCopyToBytes");
  DLDevice dev{kDLCUDA, 0};
  auto make = [&](const std::vector<float>* init) {
    ffi::Tensor t = alloc(ffi::Shape({n}), ffi::StringToDLDataType("float32"), dev,
                          ffi::Optional<ffi::String>(std::nullopt)).cast<ffi::Tensor>();
    if (init) to_dev(t, static_cast<void*>(const_cast<float*>(init->data())), size_t(n) * 4);
    return t;
  };
  ffi::Tensor dx = make(&x), dy = make(&y), dmax = make(nullptr), dmin = make(nullptr);
  f(dx, dy, dmax, dmin);
  std::vector<float> gmax(n), gmin(n);
  to_host(dmax, static_cast<void*>(gmax.data()), size_t(n) * 4);
  to_host(dmin, static_cast<void*>(gmin.data()), size_t(n) * 4);
  int bad = 0, nans = 0;
  for (int i = 0; i < n; ++i) {
    bool want_nan = std::isnan(x[i]) || std::isnan(y[i]);
    nans += want_nan;
    float wmax = want_nan ? nan : std::fmax(x[i], y[i]);
    float wmin = want_nan ? nan : std::fmin(x[i], y[i]);
    for (auto [got, want, what] : {std::tuple{gmax[i], wmax, "max"}, {gmin[i], wmin, "min"}}) {
      bool ok = want_nan ? std::isnan(got) : got == want;
      if (!ok && bad++ < 5) {
        std::printf("  %s[%d]: x=%g y=%g got %g want %g\n", what, i, x[i], y[i], got, want);
      }
    }
  }
  std::printf("vec_nan: float4 max/min on %d lanes (%d with a NaN operand): %d wrong\n", n,
              nans, bad);
  return bad ? 1 : 0;
}
