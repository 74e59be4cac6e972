// Minimal .npy (NumPy format 1.0 / 2.0) reading and writing for mcc::HostTensor.
#ifndef MCC_NPY_H_
#define MCC_NPY_H_

#include <string>

#include "mcc/runtime.h"

namespace mcc {

// Read a C-ordered, little-endian .npy file; throws mcc::Error naming the file.
HostTensor ReadNpy(const std::string& path);

// Write `tensor` as a .npy file (format 1.0).
void WriteNpy(const std::string& path, const HostTensor& tensor);

}  // namespace mcc

#endif  // MCC_NPY_H_
