// The mcc C++ runtime (see include/mcc/runtime.h): metadata read from the ELF
// section `.mcc_metadata` before anything is loaded, then TVM's Relax VM.
#include "mcc/runtime.h"

#include "integrity.h"

#include <dlfcn.h>
#include <sched.h>

#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/container/shape.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/dtype.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/json.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#if defined(__aarch64__)
#include <sys/auxv.h>
#endif

namespace mcc {
namespace ffi = tvm::ffi;

namespace {

#if defined(__aarch64__)
constexpr const char* kHostArch = "aarch64";
#elif defined(__x86_64__)
constexpr const char* kHostArch = "x86_64";
#else
constexpr const char* kHostArch = "unknown";
#endif

constexpr int kPooledAllocator = 2;
constexpr int kDeviceAttrExist = 0;

std::string Quote(const std::string& s) { return "'" + s + "'"; }

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? "," : "") << shape[i];
  os << "]";
  return os.str();
}

std::string SpecText(const TensorInfo& t) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < t.shape.size(); ++i) {
    os << (i ? "," : "") << (t.shape[i] < 0 ? t.symbols[i] : std::to_string(t.shape[i]));
  }
  os << "]";
  return os.str();
}

// The bytes of ELF64 little-endian section `name` and the file's machine type.
std::string ReadElfSection(const std::string& path, const std::string& name, int* machine) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("module file " + Quote(path) + " not found or not readable");
  std::string data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto read = [&](size_t at, size_t n) {
    if (at + n > data.size()) {
      throw Error("integrity check failed for " + Quote(path) +
                  ": truncated or damaged ELF headers");
    }
    uint64_t v = 0;
    std::memcpy(&v, data.data() + at, n);
    return v;
  };
  if (data.size() < 64 || data.compare(0, 4, "\x7f" "ELF") != 0) {
    throw Error(Quote(path) + " is not a compiled module (not an ELF file)");
  }
  if (data[4] != 2 || data[5] != 1) {
    throw Error(Quote(path) + " is not a 64-bit little-endian shared library");
  }
  *machine = static_cast<int>(read(0x12, 2));
  uint64_t shoff = read(0x28, 8);
  uint64_t shentsize = read(0x3A, 2), shnum = read(0x3C, 2), shstrndx = read(0x3E, 2);
  if (shstrndx >= shnum) throw Error(Quote(path) + " has no section names");
  uint64_t strtab = read(shoff + shstrndx * shentsize + 0x18, 8);
  for (uint64_t i = 0; i < shnum; ++i) {
    uint64_t header = shoff + i * shentsize;
    uint64_t name_at = strtab + read(header, 4);
    if (name_at < data.size() && std::strcmp(data.c_str() + name_at, name.c_str()) == 0) {
      uint64_t offset = read(header + 0x18, 8), size = read(header + 0x20, 8);
      read(offset, 0);
      if (offset + size > data.size()) {
        throw Error("integrity check failed for " + Quote(path) + ": truncated");
      }
      if (name == ".mcc_metadata") VerifyIntegrity(path, data);  // before anything trusts it
      std::string bytes = data.substr(offset, size);
      return bytes.substr(0, bytes.find('\0'));
    }
  }
  throw Error(Quote(path) + " is a shared library but not an mcc module (no " + name +
              " section)");
}

std::string ArchOfMachine(int machine) {
  switch (machine) {
    case 62: return "x86_64";
    case 183: return "aarch64";
    default: return "machine type " + std::to_string(machine);
  }
}

std::set<std::string> HostCpuFlags() {
  std::set<std::string> flags;
#if defined(__aarch64__)
  // getauxval works under qemu-user too, where /proc/cpuinfo is the host's.
  unsigned long hwcap = getauxval(AT_HWCAP);
  if (hwcap & (1UL << 1)) flags.insert("asimd");
  if (hwcap & (1UL << 10)) flags.insert("asimdhp");  // FP16 arithmetic (+fullfp16)
  if (hwcap & (1UL << 20)) flags.insert("asimddp");
  if (hwcap & (1UL << 22)) flags.insert("sve");
  if (getauxval(AT_HWCAP2) & (1UL << 14)) flags.insert("bf16");  // HWCAP2_BF16
#else
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("flags", 0) == 0) {
      std::istringstream words(line.substr(line.find(':') + 1));
      std::string w;
      while (words >> w) flags.insert(w);
      break;
    }
  }
#endif
  return flags;
}

ffi::Map<ffi::Any, ffi::Any> AsObject(const ffi::Any& v, const char* what) {
  auto o = v.try_cast<ffi::Map<ffi::Any, ffi::Any>>();
  if (!o) throw Error(std::string("module metadata: '") + what + "' is not an object");
  return *o;
}

std::string GetString(const ffi::Map<ffi::Any, ffi::Any>& o, const char* key,
                      const std::string& fallback = "") {
  auto it = o.find(ffi::String(key));
  if (it == o.end()) return fallback;
  auto s = (*it).second.try_cast<ffi::String>();
  return s ? std::string(*s) : fallback;
}

std::vector<TensorInfo> ParseTensors(const ffi::Map<ffi::Any, ffi::Any>& meta, const char* key) {
  std::vector<TensorInfo> out;
  auto it = meta.find(ffi::String(key));
  if (it == meta.end()) throw Error(std::string("module metadata has no '") + key + "'");
  for (const ffi::Any& item : (*it).second.cast<ffi::Array<ffi::Any>>()) {
    auto t = AsObject(item, key);
    TensorInfo info;
    info.name = GetString(t, "name");
    info.dtype = GetString(t, "dtype");
    for (const ffi::Any& d : t.at(ffi::String("shape")).cast<ffi::Array<ffi::Any>>()) {
      if (auto n = d.try_cast<int64_t>()) {
        info.shape.push_back(*n);
        info.symbols.emplace_back();
      } else {
        info.shape.push_back(-1);
        info.symbols.push_back(std::string(d.cast<ffi::String>()));
      }
    }
    out.push_back(std::move(info));
  }
  return out;
}

const ffi::Function& Global(const char* name) {
  static std::map<std::string, ffi::Function> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  auto f = ffi::Function::GetGlobal(name);
  if (!f) throw Error(std::string("the TVM runtime lacks '") + name + "' (libtvm_runtime.so)");
  return cache.emplace(name, *f).first->second;
}

// Load libtvm_runtime_cuda.so from beside libtvm_runtime.so (it needs the CUDA driver).
void LoadCudaRuntime(const std::string& path) {
  if (ffi::Function::GetGlobal("device_api.cuda")) return;
  Dl_info info;
  std::string dir;
  void* sym = dlsym(RTLD_DEFAULT, "TVMBackendAllocWorkspace");
  if (sym && dladdr(sym, &info) && info.dli_fname) {
    dir = info.dli_fname;
    dir = dir.substr(0, dir.rfind('/') + 1);
  }
  std::string lib = dir + "libtvm_runtime_cuda.so";
  if (!dlopen(lib.c_str(), RTLD_NOW | RTLD_GLOBAL)) {
    const char* why = dlerror();
    throw Error(Quote(path) + " is a CUDA module and cannot run on this machine: it needs an "
                "NVIDIA GPU with the CUDA driver (loading " + lib + " failed: " +
                (why ? why : "unknown") + ")");
  }
}

// TVM sizes its thread pool as half the logical CPUs on x86, assuming SMT siblings; on a
// machine without SMT that leaves half the cores idle. Like `import mcc` in Python, use
// every physical core this process may run on, unless the user set TVM_NUM_THREADS. The
// pool reads the variable when it is created, on the first kernel run.
void DefaultThreadCount() {
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return;
  int cores = CPU_COUNT(&allowed);
  std::ifstream smt("/sys/devices/system/cpu/smt/active");
  int smt_active = 0;
  if (smt >> smt_active && smt_active == 1) cores /= 2;
  setenv("TVM_NUM_THREADS", std::to_string(std::max(1, cores)).c_str(), /*overwrite=*/0);
}

}  // namespace

int64_t HostTensor::size() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

size_t DTypeBytes(const std::string& dtype) {
  static const std::map<std::string, size_t> sizes = {
      {"float32", 4}, {"float64", 8}, {"float16", 2}, {"int8", 1},  {"uint8", 1},
      {"int16", 2},   {"int32", 4},   {"int64", 8},   {"uint16", 2}, {"uint32", 4},
      {"uint64", 8},  {"bool", 1}};
  auto it = sizes.find(dtype);
  if (it == sizes.end()) throw Error("unsupported dtype '" + dtype + "'");
  return it->second;
}

struct Module::Impl {
  std::string path;
  std::string metadata;
  std::string target;
  std::string device_name = "cpu";
  DLDevice device{kDLCPU, 0};
  std::vector<TensorInfo> inputs, outputs;
  std::optional<ffi::Module> library, vm;
  std::optional<ffi::Function> main;
  std::vector<ffi::Optional<ffi::Tensor>> input_values;
  std::vector<ffi::Tensor> output_values;

  void CheckRunsHere(const ffi::Map<ffi::Any, ffi::Any>& target_json, int machine) {
    std::string arch = ArchOfMachine(machine);
    std::string intro = Quote(path) + " is built for " + target + " (" + arch + ")";
    if (arch != kHostArch) {
      throw Error(intro + " and cannot run on this machine: it is " + kHostArch);
    }
    auto it = target_json.find(ffi::String("cpu_flags"));
    if (it != target_json.end()) {
      std::set<std::string> have = HostCpuFlags();
      for (const ffi::Any& flag : (*it).second.cast<ffi::Array<ffi::Any>>()) {
        std::string f = std::string(flag.cast<ffi::String>());
        if (!have.count(f)) {
          throw Error(intro + " and cannot run on this machine: this CPU lacks " + f);
        }
      }
    }
    auto tvm_target = AsObject(target_json.at(ffi::String("tvm")), "target.tvm");
    if (GetString(tvm_target, "kind") == "cuda") {
      device_name = "cuda";
      device = DLDevice{kDLCUDA, 0};
      LoadCudaRuntime(path);
      int64_t exist = Global("runtime.GetDeviceAttr")(static_cast<int>(kDLCUDA), 0,
                                                      kDeviceAttrExist).cast<int64_t>();
      if (!exist) {
        throw Error(intro + " and cannot run on this machine: it needs an NVIDIA GPU and "
                    "none was found");
      }
    }
  }

  size_t InputIndex(const std::string& name) const {
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (inputs[i].name == name) return i;
    }
    std::string names;
    for (const auto& t : inputs) names += (names.empty() ? "" : ", ") + t.name;
    throw Error("unknown input '" + name + "'; the model's inputs are: " + names);
  }
};

Module Module::Load(const std::string& path) {
  DefaultThreadCount();
  auto impl = std::make_shared<Impl>();
  impl->path = path;
  int machine = 0;
  impl->metadata = ReadElfSection(path, ".mcc_metadata", &machine);
  ffi::String parse_error;
  ffi::Any parsed = ffi::json::Parse(impl->metadata, &parse_error);
  if (!parse_error.empty()) throw Error(Quote(path) + ": its .mcc_metadata section is damaged");
  auto meta = AsObject(parsed, "metadata");
  if (GetString(meta, "format") != "mcc-module/1") {
    throw Error(Quote(path) + " has metadata format '" + GetString(meta, "format") +
                "'; this runtime reads mcc-module/1");
  }
  auto target_json = AsObject(meta.at(ffi::String("target")), "target");
  impl->target = GetString(target_json, "name", "unknown");
  impl->inputs = ParseTensors(meta, "inputs");
  impl->outputs = ParseTensors(meta, "outputs");
  impl->CheckRunsHere(target_json, machine);

  try {
    // dlopen searches the library path for a name without a '/': pass an absolute path.
    char* resolved = realpath(path.c_str(), nullptr);
    std::string absolute = resolved ? resolved : path;
    free(resolved);
    impl->library = ffi::Module::LoadFromFile(absolute);
    ffi::Module vm =
        (*impl->library)->GetFunction("vm_load_executable").value()().cast<ffi::Module>();
    if (impl->device.device_type == kDLCPU) {
      vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0,
                                                   kPooledAllocator);
    } else {
      vm->GetFunction("vm_initialization").value()(
          static_cast<int>(impl->device.device_type), 0, kPooledAllocator,
          static_cast<int>(kDLCPU), 0, kPooledAllocator);
    }
    impl->main = vm->GetFunction("main").value();
    impl->vm = vm;
  } catch (const ffi::Error& err) {
    throw Error("cannot load " + Quote(path) + ": " + err.message());
  }
  impl->input_values.resize(impl->inputs.size());
  Module module;
  module.impl_ = impl;
  return module;
}

const std::vector<TensorInfo>& Module::inputs() const { return impl_->inputs; }
const std::vector<TensorInfo>& Module::outputs() const { return impl_->outputs; }
const std::string& Module::metadata_json() const { return impl_->metadata; }
const std::string& Module::target_name() const { return impl_->target; }
const std::string& Module::device() const { return impl_->device_name; }

void Module::SetInput(const std::string& name, const void* data, const std::vector<int64_t>& shape,
                      const std::string& dtype) {
  size_t index = impl_->InputIndex(name);
  const TensorInfo& spec = impl_->inputs[index];
  if (dtype != spec.dtype) {
    throw Error("input '" + name + "' has dtype " + dtype + ", expected " + spec.dtype);
  }
  if (shape.size() != spec.shape.size()) {
    throw Error("input '" + name + "' has shape " + ShapeText(shape) + ", expected " +
                SpecText(spec));
  }
  for (size_t axis = 0; axis < shape.size(); ++axis) {
    if (spec.shape[axis] >= 0 && spec.shape[axis] != shape[axis]) {
      throw Error("input '" + name + "' has shape " + ShapeText(shape) + ", expected " +
                  SpecText(spec) + " (axis " + std::to_string(axis) + " must be " +
                  std::to_string(spec.shape[axis]) + ")");
    }
  }
  int64_t count = 1;
  for (int64_t d : shape) count *= d;
  size_t nbytes = static_cast<size_t>(count) * DTypeBytes(dtype);
  try {
    ffi::Tensor tensor = Global("runtime.TVMTensorAllocWithScope")(
        ffi::Shape(shape), ffi::StringToDLDataType(dtype), impl_->device,
        ffi::Optional<ffi::String>(std::nullopt)).cast<ffi::Tensor>();
    Global("runtime.TVMTensorCopyFromBytes")(tensor, const_cast<void*>(data), nbytes);
    impl_->input_values[index] = tensor;
  } catch (const ffi::Error& err) {
    throw Error("cannot set input '" + name + "': " + err.message());
  }
}

void Module::SetInput(const std::string& name, const HostTensor& tensor) {
  size_t want = static_cast<size_t>(tensor.size()) * DTypeBytes(tensor.dtype);
  if (tensor.bytes.size() != want) {
    throw Error("input '" + name + "': " + std::to_string(tensor.bytes.size()) +
                " bytes for shape " + ShapeText(tensor.shape) + " " + tensor.dtype);
  }
  SetInput(name, tensor.bytes.data(), tensor.shape, tensor.dtype);
}

void Module::Run() {
  std::vector<ffi::AnyView> args;
  std::map<std::string, int64_t> bound;
  for (size_t i = 0; i < impl_->inputs.size(); ++i) {
    const TensorInfo& spec = impl_->inputs[i];
    if (!impl_->input_values[i]) throw Error("input '" + spec.name + "' was not set");
    const ffi::Tensor& t = *impl_->input_values[i];
    for (size_t axis = 0; axis < spec.shape.size(); ++axis) {
      if (spec.shape[axis] >= 0) continue;
      int64_t got = t.shape()[axis];
      auto [it, fresh] = bound.emplace(spec.symbols[axis], got);
      if (!fresh && it->second != got) {
        throw Error("input '" + spec.name + "' has " + spec.symbols[axis] + "=" +
                    std::to_string(got) + " on axis " + std::to_string(axis) +
                    ", but another input set " + spec.symbols[axis] + "=" +
                    std::to_string(it->second));
      }
    }
    args.emplace_back(t);
  }
  ffi::Any result;
  try {
    impl_->main->CallPacked(args.data(), static_cast<int32_t>(args.size()), &result);
  } catch (const ffi::Error& err) {
    throw Error("running " + Quote(impl_->path) + " failed: " + err.message());
  }
  impl_->output_values.clear();
  if (auto tensor = result.try_cast<ffi::Tensor>()) {
    impl_->output_values.push_back(*tensor);
  } else {
    for (const ffi::Any& item : result.cast<ffi::Array<ffi::Any>>()) {
      impl_->output_values.push_back(item.cast<ffi::Tensor>());
    }
  }
}

HostTensor Module::GetOutput(size_t index) const {
  if (index >= impl_->output_values.size()) {
    throw Error("output " + std::to_string(index) + " does not exist (did Run() succeed?)");
  }
  const ffi::Tensor& t = impl_->output_values[index];
  HostTensor out;
  out.shape.assign(t.shape().begin(), t.shape().end());
  out.dtype = std::string(ffi::DLDataTypeToString(t.dtype()));
  out.bytes.resize(static_cast<size_t>(out.size()) * DTypeBytes(out.dtype));
  Global("runtime.TVMTensorCopyToBytes")(t, static_cast<void*>(out.bytes.data()),
                                         out.bytes.size());
  return out;
}

HostTensor Module::GetOutput(const std::string& name) const {
  for (size_t i = 0; i < impl_->outputs.size(); ++i) {
    if (impl_->outputs[i].name == name) return GetOutput(i);
  }
  std::string names;
  for (const auto& t : impl_->outputs) names += (names.empty() ? "" : ", ") + t.name;
  throw Error("unknown output '" + name + "'; the model's outputs are: " + names);
}

}  // namespace mcc
