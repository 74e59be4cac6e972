// mcc C++ runtime: load a module compiled by `mcc compile`, feed it, run it.
//
//   mcc::Module model = mcc::Module::Load("model.so");
//   for (const mcc::TensorInfo& t : model.inputs()) std::cout << t.name << "\n";
//   model.SetInput("image", pixels.data(), {1, 3, 224, 224}, "float32");
//   model.Run();
//   mcc::HostTensor probs = model.GetOutput("probs");
//   const float* p = probs.data<float>();
//
// Only standard headers here: link libmcc_runtime.a with libtvm_runtime.so and
// libtvm_ffi.so (see runtime/cpp/README.md); TVM's headers are not needed.
#ifndef MCC_RUNTIME_H_
#define MCC_RUNTIME_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace mcc {

// Every failure a caller can cause: one line naming the module, input, shape or dtype.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// One input or output as recorded in the module's metadata. A symbolic
// dimension (e.g. a batch axis) is -1, with its name in `symbols`.
struct TensorInfo {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<std::string> symbols;
  std::string dtype;  // "float32", "int64", ...
};

// A tensor in host memory: what GetOutput returns and what SetInput can take.
struct HostTensor {
  std::vector<int64_t> shape;
  std::string dtype;
  std::vector<uint8_t> bytes;

  int64_t size() const;  // number of elements
  template <typename T>
  T* data() { return reinterpret_cast<T*>(bytes.data()); }
  template <typename T>
  const T* data() const { return reinterpret_cast<const T*>(bytes.data()); }
};

// Bytes per element of an mcc dtype name ("float32" -> 4); throws Error if unknown.
size_t DTypeBytes(const std::string& dtype);

class Module {
 public:
  // Load `path`. Checks, before loading any code, that it is an mcc module for this
  // machine's architecture, CPU features and (for CUDA modules) that a GPU is present.
  static Module Load(const std::string& path);

  const std::vector<TensorInfo>& inputs() const;
  const std::vector<TensorInfo>& outputs() const;
  const std::string& metadata_json() const;  // the full embedded metadata
  const std::string& target_name() const;    // e.g. "rpi4", "cuda-sm90"
  const std::string& device() const;         // "cpu" or "cuda"

  // Copy an input in. Name, dtype and the fixed dimensions must match the metadata.
  void SetInput(const std::string& name, const void* data, const std::vector<int64_t>& shape,
                const std::string& dtype);
  void SetInput(const std::string& name, const HostTensor& tensor);

  // Run once on the inputs set so far (all of them must be set).
  void Run();

  // Copy an output (by name or position) of the last Run back to host memory.
  HostTensor GetOutput(const std::string& name) const;
  HostTensor GetOutput(size_t index) const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace mcc

#endif  // MCC_RUNTIME_H_
