// mcc_run: run a compiled module on .npy inputs, write .npy outputs, time it.
//
//   mcc_run model.so -i image=x.npy -o out/ --repeat 20
//
// Errors are one line on stderr starting with "error:" and exit code 1.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "mcc/runtime.h"
#include "npy.h"

namespace {

const char* kUsage =
    "usage: mcc_run MODEL.so [-i NAME=IN.npy]... [-o OUT_DIR] [--repeat N] [--warmup N]\n"
    "       mcc_run MODEL.so --list\n"
    "  -i NAME=IN.npy   an input (repeat for each; NAME= may be left out for one input)\n"
    "  -o OUT_DIR       write each output as OUT_DIR/<output name>.npy (created if missing)\n"
    "  --repeat N       timed runs (default 1); prints median / min / mean latency\n"
    "  --warmup N       untimed runs first (default 1 when --repeat > 1)\n"
    "  --list           print the module's target, inputs and outputs\n";

std::string Describe(const mcc::TensorInfo& t) {
  std::string s = t.name + ": " + t.dtype + "[";
  for (size_t i = 0; i < t.shape.size(); ++i) {
    s += (i ? "," : "") + (t.shape[i] < 0 ? t.symbols[i] : std::to_string(t.shape[i]));
  }
  return s + "]";
}

std::string FileName(std::string name) {
  for (char& c : name) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) c = '_';
  }
  return name;
}

// `mkdir -p DIR`, before the model runs: a run is not wasted on an output directory that
// cannot be written.
void MakeDirs(const std::string& dir) {
  for (size_t at = 1; at <= dir.size(); ++at) {
    if (at < dir.size() && dir[at] != '/') continue;
    std::string prefix = dir.substr(0, at);
    if (mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      throw mcc::Error("cannot create output directory '" + dir + "': " + std::strerror(errno));
    }
  }
  struct stat info;
  if (stat(dir.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) {
    throw mcc::Error("cannot create output directory '" + dir + "': not a directory");
  }
}

int ParseCount(const std::string& flag, const char* text) {
  char* end = nullptr;
  long n = std::strtol(text, &end, 10);
  if (*end != '\0' || n < 0) throw mcc::Error(flag + " needs a non-negative integer");
  return static_cast<int>(n);
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "-h" || args[0] == "--help") {
    std::cout << kUsage;
    return args.empty() ? 1 : 0;
  }
  std::string model_path = args[0];
  std::vector<std::pair<std::string, std::string>> feeds;
  std::string out_dir;
  int repeat = 1, warmup = -1;
  bool list = false;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= args.size()) throw mcc::Error(a + " needs a value");
      return args[++i].c_str();
    };
    if (a == "-i" || a == "--input") {
      std::string v = value();
      size_t eq = v.find('=');
      feeds.emplace_back(eq == std::string::npos ? "" : v.substr(0, eq),
                         eq == std::string::npos ? v : v.substr(eq + 1));
    } else if (a == "-o" || a == "--output-dir") {
      out_dir = value();
      while (out_dir.size() > 1 && out_dir.back() == '/') out_dir.pop_back();
    } else if (a == "--repeat") {
      repeat = std::max(1, ParseCount(a, value()));
    } else if (a == "--warmup") {
      warmup = ParseCount(a, value());
    } else if (a == "--list") {
      list = true;
    } else {
      throw mcc::Error("unknown option '" + a + "' (mcc_run --help)");
    }
  }

  if (!out_dir.empty() && !list) MakeDirs(out_dir);
  mcc::Module module = mcc::Module::Load(model_path);
  if (list) {
    std::cout << "target: " << module.target_name() << " (" << module.device() << ")\n";
    for (const auto& t : module.inputs()) std::cout << "input   " << Describe(t) << "\n";
    for (const auto& t : module.outputs()) std::cout << "output  " << Describe(t) << "\n";
    return 0;
  }
  for (auto& [name, file] : feeds) {
    if (name.empty()) {
      if (module.inputs().size() != 1) {
        throw mcc::Error("-i " + file + " has no NAME=; the model has " +
                         std::to_string(module.inputs().size()) + " inputs, name each one");
      }
      name = module.inputs()[0].name;
    }
    module.SetInput(name, mcc::ReadNpy(file));
  }
  for (const auto& t : module.inputs()) {
    bool given = std::any_of(feeds.begin(), feeds.end(),
                             [&](const auto& f) { return f.first == t.name; });
    if (!given) throw mcc::Error("missing input: -i " + t.name + "=FILE.npy (" + Describe(t) + ")");
  }

  if (warmup < 0) warmup = repeat > 1 ? 1 : 0;
  for (int i = 0; i < warmup; ++i) module.Run();
  std::vector<double> ms;
  for (int i = 0; i < repeat; ++i) {
    auto start = std::chrono::steady_clock::now();
    module.Run();
    // Copying outputs back is part of a run for a caller (and syncs a GPU).
    for (size_t k = 0; k < module.outputs().size(); ++k) module.GetOutput(k);
    std::chrono::duration<double, std::milli> took = std::chrono::steady_clock::now() - start;
    ms.push_back(took.count());
  }
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  double mean = 0;
  for (double v : ms) mean += v / ms.size();
  std::printf("ran %s on %s: %d run(s), median %.3f ms, min %.3f ms, mean %.3f ms\n",
              model_path.c_str(), module.device().c_str(), repeat, sorted[sorted.size() / 2],
              sorted.front(), mean);

  for (size_t k = 0; k < module.outputs().size(); ++k) {
    mcc::HostTensor t = module.GetOutput(k);
    std::string line = "output  " + module.outputs()[k].name + ": " + t.dtype + "[";
    for (size_t d = 0; d < t.shape.size(); ++d) line += (d ? "," : "") + std::to_string(t.shape[d]);
    std::cout << line << "]";
    if (!out_dir.empty()) {
      std::string file = out_dir + "/" + FileName(module.outputs()[k].name) + ".npy";
      mcc::WriteNpy(file, t);
      std::cout << " -> " << file;
    }
    std::cout << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Main(argc, argv);
  } catch (const mcc::Error& err) {
    std::cerr << "error: " << err.what() << "\n";
    return 1;
  } catch (const std::exception& err) {
    std::cerr << "internal error: " << err.what() << "\n";
    return 2;
  }
}
