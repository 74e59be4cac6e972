// A module's integrity check (see compiler/integrity.py): the section `.mcc_digest`
// holds "mcc-sha256:<hex>", the sha256 of the whole file with that section zeroed.
#pragma once

#include <string>

namespace mcc {

// The SHA-256 of `data`, as 64 lowercase hex digits.
std::string Sha256Hex(const std::string& data);

// Throws mcc::Error (one line, "integrity check failed ...") unless the ELF image `data`
// read from `path` carries a digest that matches its contents.
void VerifyIntegrity(const std::string& path, const std::string& data);

}  // namespace mcc
