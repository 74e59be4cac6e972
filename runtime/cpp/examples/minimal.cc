// The smallest program using the mcc C++ runtime: load, feed zeros, run, print.
//   minimal MODEL.so
#include <iostream>
#include <vector>

#include "mcc/runtime.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: minimal MODEL.so\n";
    return 2;
  }
  try {
    mcc::Module model = mcc::Module::Load(argv[1]);
    std::vector<std::vector<uint8_t>> buffers;
    for (const mcc::TensorInfo& input : model.inputs()) {
      std::vector<int64_t> shape = input.shape;
      int64_t count = 1;
      for (int64_t& d : shape) count *= (d = d < 0 ? 1 : d);  // symbolic dims -> 1
      buffers.emplace_back(count * mcc::DTypeBytes(input.dtype), 0);
      model.SetInput(input.name, buffers.back().data(), shape, input.dtype);
    }
    model.Run();
    for (size_t i = 0; i < model.outputs().size(); ++i) {
      mcc::HostTensor out = model.GetOutput(i);
      std::cout << model.outputs()[i].name << " " << out.dtype << " " << out.size();
      if (out.dtype == "float32" && out.size() > 0) std::cout << " first " << out.data<float>()[0];
      std::cout << "\n";
    }
  } catch (const mcc::Error& err) {
    std::cerr << "error: " << err.what() << "\n";
    return 1;
  }
  return 0;
}
