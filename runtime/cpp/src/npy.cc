#include "npy.h"

#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

namespace mcc {
namespace {

const std::map<std::string, std::string>& DescrToDType() {
  static const std::map<std::string, std::string> table = {
      {"<f4", "float32"}, {"<f8", "float64"}, {"<f2", "float16"}, {"|i1", "int8"},
      {"|u1", "uint8"},   {"<i2", "int16"},   {"<i4", "int32"},   {"<i8", "int64"},
      {"<u2", "uint16"},  {"<u4", "uint32"},  {"<u8", "uint64"},  {"|b1", "bool"}};
  return table;
}

// The value text of `key` in the header dict, e.g. 'descr': '<f4' -> <f4.
std::string Field(const std::string& header, const std::string& key, const std::string& path) {
  size_t at = header.find("'" + key + "'");
  if (at == std::string::npos) throw Error(path + ": .npy header has no '" + key + "'");
  at = header.find(':', at) + 1;
  while (at < header.size() && header[at] == ' ') ++at;
  if (header[at] == '\'') return header.substr(at + 1, header.find('\'', at + 1) - at - 1);
  if (header[at] == '(') return header.substr(at + 1, header.find(')', at) - at - 1);
  size_t end = header.find_first_of(",}", at);
  return header.substr(at, end - at);
}

}  // namespace

HostTensor ReadNpy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot open '" + path + "'");
  char magic[8];
  if (!f.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) {
    throw Error("'" + path + "' is not a .npy file");
  }
  uint32_t header_len = 0;
  if (magic[6] == 1) {
    uint16_t n = 0;
    f.read(reinterpret_cast<char*>(&n), 2);
    header_len = n;
  } else {
    f.read(reinterpret_cast<char*>(&header_len), 4);
  }
  std::string header(header_len, '\0');
  f.read(&header[0], header_len);
  HostTensor t;
  std::string descr = Field(header, "descr", path);
  auto it = DescrToDType().find(descr);
  if (it == DescrToDType().end()) {
    throw Error("'" + path + "': unsupported .npy dtype '" + descr + "'");
  }
  t.dtype = it->second;
  if (Field(header, "fortran_order", path).find("True") != std::string::npos) {
    throw Error("'" + path + "' is Fortran-ordered; save it C-ordered (np.ascontiguousarray)");
  }
  std::istringstream dims(Field(header, "shape", path));
  std::string dim;
  while (std::getline(dims, dim, ',')) {
    if (dim.find_first_of("0123456789") != std::string::npos) t.shape.push_back(std::stoll(dim));
  }
  t.bytes.resize(static_cast<size_t>(t.size()) * DTypeBytes(t.dtype));
  if (!f.read(reinterpret_cast<char*>(t.bytes.data()), static_cast<std::streamsize>(t.bytes.size()))) {
    throw Error("'" + path + "' is truncated");
  }
  return t;
}

void WriteNpy(const std::string& path, const HostTensor& tensor) {
  std::string descr;
  for (const auto& [d, name] : DescrToDType()) {
    if (name == tensor.dtype) descr = d;
  }
  if (descr.empty()) throw Error("cannot write dtype " + tensor.dtype + " to .npy");
  std::ostringstream shape;
  for (size_t i = 0; i < tensor.shape.size(); ++i) shape << tensor.shape[i] << ", ";
  std::string dims = shape.str();
  if (tensor.shape.size() > 1) dims = dims.substr(0, dims.size() - 2);
  if (tensor.shape.size() == 1) dims = dims.substr(0, dims.size() - 1);
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + dims +
                       "), }";
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary);
    if (!f) throw Error("cannot write '" + path + "'");
    f.write("\x93NUMPY\x01\x00", 8);
    uint16_t n = static_cast<uint16_t>(header.size());
    f.write(reinterpret_cast<const char*>(&n), 2);
    f << header;
    f.write(reinterpret_cast<const char*>(tensor.bytes.data()),
            static_cast<std::streamsize>(tensor.bytes.size()));
    if (!f) throw Error("cannot write '" + path + "'");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw Error("cannot write '" + path + "'");
}

}  // namespace mcc
