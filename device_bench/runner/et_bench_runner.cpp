// et_bench_runner: time one ExecuTorch program (.pte) and write the numbers as JSON.
//
// The same source builds for the host (against the executorch wheel) and for Android arm64
// (against an ExecuTorch Android build, see build_android.sh). The Python side
// (device_bench.host / device_bench.protocol) runs it and turns its JSON into a BenchResult.
//
// Usage:
//   et_bench_runner --model M.pte --output OUT.json [--threads N] [--warmup N]
//                   [--iterations N] [--seed S] [--input-file RAW] [--etdump OUT.etdp]
//                   [--method forward]
//
// Inputs are filled from `--input-file` (raw little-endian tensor bytes of every tensor input,
// concatenated in input order) or, without it, with seeded random values (floats uniform in
// [-1, 1], integers in [0, 8), booleans 0/1).
//
// With `--etdump`, ExecuTorch's ETDump profiler records every operator of the timed iterations
// (not the load or the warmup) and the dump is written to that file after the last one.
//
// Exit codes: 0 ok, 2 usage error, 3 load error, 4 input error, 5 execution error, 6 I/O error.
// On an error after the arguments were parsed, the JSON file is still written with "error".

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/runtime/platform/runtime.h>

#ifdef ET_BENCH_WITH_ETDUMP
#include <executorch/devtools/etdump/etdump_flatcc.h>
#endif

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

// The wheel ships libexecutorch_threadpool.so (it exports these symbols) but not the header
// <executorch/extension/threadpool/threadpool.h>. The declarations below match the exported
// (mangled) names; they are the same API an ExecuTorch source build exposes in that header.
// XNNPACK and the optimized kernels take their pthreadpool from get_threadpool(), so resetting
// it sets the number of threads every delegate call uses.
#ifdef ET_BENCH_WITH_THREADPOOL
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  size_t get_thread_count() const;
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool
#endif

namespace {

using executorch::aten::ScalarType;
using executorch::extension::Module;
using executorch::extension::TensorPtr;
using executorch::runtime::Error;
using executorch::runtime::EValue;
using executorch::runtime::Tag;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string model;
  std::string output;
  std::string input_file;
  std::string etdump;
  std::string method = "forward";
  int threads = 0;  // 0: keep the runtime's default
  int warmup = 3;
  int iterations = 10;
  uint64_t seed = 0;
};

struct Report {
  double load_ms = -1.0;
  std::vector<double> latencies_ms;
  int threads_requested = 0;
  long threads_used = -1;
  std::vector<std::string> input_desc;
  size_t num_outputs = 0;
  double output_checksum = 0.0;
  std::string etdump_path;
  std::string error;
  std::string stage;
};

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out;
}

// Reads "<key>:   <n> kB" from a /proc file; -1 when absent (e.g. not Linux).
long proc_kb(const char* path, const char* key) {
  std::ifstream f(path);
  std::string line;
  const size_t klen = std::strlen(key);
  while (std::getline(f, line)) {
    if (line.compare(0, klen, key) == 0 && line.size() > klen && line[klen] == ':') {
      return std::strtol(line.c_str() + klen + 1, nullptr, 10);
    }
  }
  return -1;
}

bool write_report(const Options& opt, const Report& r) {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::ostringstream js;
  js.precision(6);
  js << std::fixed;
  js << "{\n  \"runner\": \"et_bench_runner\",\n  \"runner_version\": 2,\n";
  js << "  \"model\": \"" << json_escape(opt.model) << "\",\n";
  js << "  \"method\": \"" << json_escape(opt.method) << "\",\n";
  js << "  \"threads_requested\": " << r.threads_requested << ",\n";
  js << "  \"threads_used\": " << r.threads_used << ",\n";
  js << "  \"warmup\": " << opt.warmup << ",\n";
  js << "  \"iterations\": " << opt.iterations << ",\n";
  js << "  \"seed\": " << opt.seed << ",\n";
  js << "  \"input_source\": \"" << (opt.input_file.empty() ? "random" : "file") << "\",\n";
  js << "  \"inputs\": [";
  for (size_t i = 0; i < r.input_desc.size(); ++i) {
    js << (i ? ", " : "") << "\"" << json_escape(r.input_desc[i]) << "\"";
  }
  js << "],\n";
  js << "  \"load_ms\": " << r.load_ms << ",\n";
  js << "  \"latencies_ms\": [";
  for (size_t i = 0; i < r.latencies_ms.size(); ++i) {
    js << (i ? ", " : "") << r.latencies_ms[i];
  }
  js << "],\n";
  js << "  \"num_outputs\": " << r.num_outputs << ",\n";
  js << "  \"output_checksum\": " << r.output_checksum << ",\n";
  js << "  \"vm_hwm_kb\": " << proc_kb("/proc/self/status", "VmHWM") << ",\n";
  js << "  \"vm_rss_kb\": " << proc_kb("/proc/self/status", "VmRSS") << ",\n";
  js << "  \"pss_kb\": " << proc_kb("/proc/self/smaps_rollup", "Pss") << ",\n";
  js << "  \"ru_maxrss_kb\": " << ru.ru_maxrss << ",\n";
  js << "  \"etdump_path\": "
     << (r.etdump_path.empty() ? "null" : "\"" + json_escape(r.etdump_path) + "\"") << ",\n";
  js << "  \"stage\": \"" << json_escape(r.stage) << "\",\n";
  js << "  \"error\": " << (r.error.empty() ? "null" : "\"" + json_escape(r.error) + "\"")
     << "\n}\n";
  // Write next to the target and rename, so a reader never sees a half-written file.
  const std::string tmp = opt.output + ".part";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return false;
    f << js.str();
    if (!f.good()) return false;
  }
  return std::rename(tmp.c_str(), opt.output.c_str()) == 0;
}

int fail(const Options& opt, Report& r, int code, const std::string& stage,
         const std::string& msg) {
  r.stage = stage;
  r.error = msg;
  std::fprintf(stderr, "et_bench_runner: %s: %s\n", stage.c_str(), msg.c_str());
  if (!opt.output.empty()) write_report(opt, r);
  return code;
}

void usage() {
  std::fprintf(stderr,
               "usage: et_bench_runner --model M.pte --output OUT.json [--threads N] "
               "[--warmup N] [--iterations N] [--seed S] [--input-file RAW] "
               "[--etdump OUT.etdp] [--method NAME]\n");
}

bool parse_int(const char* s, long lo, long hi, long* out) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

size_t element_size(ScalarType t) {
  switch (t) {
    case ScalarType::Float: return 4;
    case ScalarType::Double: return 8;
    case ScalarType::Half: return 2;
    case ScalarType::BFloat16: return 2;
    case ScalarType::Long: return 8;
    case ScalarType::Int: return 4;
    case ScalarType::Short: return 2;
    case ScalarType::Char: return 1;
    case ScalarType::Byte: return 1;
    case ScalarType::Bool: return 1;
    default: return 0;
  }
}

void fill_random(ScalarType t, void* data, size_t n, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> uf(-1.0f, 1.0f);
  std::uniform_int_distribution<int> ui(0, 7);
  switch (t) {
    case ScalarType::Float: {
      auto* p = static_cast<float*>(data);
      for (size_t i = 0; i < n; ++i) p[i] = uf(rng);
      break;
    }
    case ScalarType::Double: {
      auto* p = static_cast<double*>(data);
      for (size_t i = 0; i < n; ++i) p[i] = uf(rng);
      break;
    }
    case ScalarType::Long: {
      auto* p = static_cast<int64_t*>(data);
      for (size_t i = 0; i < n; ++i) p[i] = ui(rng);
      break;
    }
    case ScalarType::Int: {
      auto* p = static_cast<int32_t*>(data);
      for (size_t i = 0; i < n; ++i) p[i] = ui(rng);
      break;
    }
    case ScalarType::Bool: {
      auto* p = static_cast<uint8_t*>(data);
      for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(ui(rng) & 1);
      break;
    }
    default: {
      // 16-bit floats, int16 and bytes: small integers are valid bit patterns for all of them.
      auto* p = static_cast<uint8_t*>(data);
      const size_t nb = n * element_size(t);
      for (size_t i = 0; i < nb; ++i) p[i] = static_cast<uint8_t>(ui(rng));
    }
  }
}

double checksum(const EValue& v) {
  if (!v.isTensor()) return 0.0;
  const auto& t = v.toTensor();
  double s = 0.0;
  if (t.scalar_type() == ScalarType::Float) {
    const float* p = t.const_data_ptr<float>();
    for (ssize_t i = 0; i < t.numel(); ++i) s += p[i];
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      usage();
      return 0;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "et_bench_runner: %s needs a value\n", a.c_str());
      usage();
      return 2;
    }
    const char* v = argv[++i];
    long n = 0;
    if (a == "--model") {
      opt.model = v;
    } else if (a == "--output") {
      opt.output = v;
    } else if (a == "--input-file") {
      opt.input_file = v;
    } else if (a == "--etdump") {
      opt.etdump = v;
    } else if (a == "--method") {
      opt.method = v;
    } else if (a == "--threads" && parse_int(v, 0, 1024, &n)) {
      opt.threads = static_cast<int>(n);
    } else if (a == "--warmup" && parse_int(v, 0, 1000000, &n)) {
      opt.warmup = static_cast<int>(n);
    } else if (a == "--iterations" && parse_int(v, 1, 1000000, &n)) {
      opt.iterations = static_cast<int>(n);
    } else if (a == "--seed" && parse_int(v, 0, 2147483647L, &n)) {
      opt.seed = static_cast<uint64_t>(n);
    } else {
      std::fprintf(stderr, "et_bench_runner: bad option or value: %s %s\n", a.c_str(), v);
      usage();
      return 2;
    }
  }
  if (opt.model.empty() || opt.output.empty()) {
    std::fprintf(stderr, "et_bench_runner: --model and --output are required\n");
    usage();
    return 2;
  }

  Report r;
  r.threads_requested = opt.threads;
  executorch::runtime::runtime_init();

#ifdef ET_BENCH_WITH_THREADPOOL
  {
    auto* pool = executorch::extension::threadpool::get_threadpool();
    if (pool != nullptr) {
      if (opt.threads > 0 && !pool->_unsafe_reset_threadpool(static_cast<uint32_t>(opt.threads))) {
        return fail(opt, r, 2, "threads", "could not resize the thread pool");
      }
      r.threads_used = static_cast<long>(pool->get_thread_count());
    }
  }
#endif

  if (!opt.etdump.empty()) {
#ifndef ET_BENCH_WITH_ETDUMP
    return fail(opt, r, 2, "etdump", "this runner was built without ETDump support");
#endif
  }

  // Load: construct the module and load the method (program + delegates initialised).
  const auto t_load = Clock::now();
  std::unique_ptr<Module> module;
#ifdef ET_BENCH_WITH_ETDUMP
  if (!opt.etdump.empty()) {
    module = std::make_unique<Module>(opt.model, Module::LoadMode::File,
                                      std::make_unique<executorch::etdump::ETDumpGen>());
  }
#endif
  if (!module) module = std::make_unique<Module>(opt.model, Module::LoadMode::File);
  Error err = module->load_method(opt.method);
  r.load_ms = ms_since(t_load);
  if (err != Error::Ok) {
    std::ostringstream m;
    m << "could not load method '" << opt.method << "' of " << opt.model << " (error 0x"
      << std::hex << static_cast<unsigned>(err) << ")";
    return fail(opt, r, 3, "load", m.str());
  }

  auto meta = module->method_meta(opt.method);
  if (!meta.ok()) return fail(opt, r, 3, "load", "no method metadata");

  // Inputs.
  std::mt19937_64 rng(opt.seed);
  std::ifstream raw;
  if (!opt.input_file.empty()) {
    raw.open(opt.input_file, std::ios::binary);
    if (!raw) return fail(opt, r, 4, "inputs", "cannot open input file " + opt.input_file);
  }
  std::vector<std::vector<uint8_t>> buffers;
  std::vector<TensorPtr> tensors;
  std::vector<EValue> inputs;
  for (size_t i = 0; i < meta->num_inputs(); ++i) {
    auto tag = meta->input_tag(i);
    if (!tag.ok() || *tag != Tag::Tensor) {
      return fail(opt, r, 4, "inputs", "input " + std::to_string(i) + " is not a tensor");
    }
    auto info = meta->input_tensor_meta(i);
    if (!info.ok()) return fail(opt, r, 4, "inputs", "no tensor metadata for an input");
    const ScalarType st = info->scalar_type();
    const size_t es = element_size(st);
    if (es == 0) {
      return fail(opt, r, 4, "inputs",
                  "unsupported dtype code " + std::to_string(static_cast<int>(st)));
    }
    std::vector<executorch::aten::SizesType> sizes(info->sizes().begin(), info->sizes().end());
    size_t numel = 1;
    std::ostringstream desc;
    desc << "dtype" << static_cast<int>(st) << "[";
    for (size_t d = 0; d < sizes.size(); ++d) {
      numel *= static_cast<size_t>(sizes[d]);
      desc << (d ? "," : "") << sizes[d];
    }
    desc << "]";
    r.input_desc.push_back(desc.str());
    buffers.emplace_back(numel * es);
    auto& buf = buffers.back();
    if (raw.is_open()) {
      raw.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(buf.size()));
      if (static_cast<size_t>(raw.gcount()) != buf.size()) {
        return fail(opt, r, 4, "inputs",
                    "input file " + opt.input_file + " is too short for input " +
                        std::to_string(i) + " (" + desc.str() + ")");
      }
    } else {
      fill_random(st, buf.data(), numel, rng);
    }
    tensors.push_back(executorch::extension::make_tensor_ptr(sizes, buf.data(), st));
    inputs.emplace_back(*tensors.back());
  }

  // Warmup, then timed iterations.
  for (int i = 0; i < opt.warmup; ++i) {
    auto out = module->execute(opt.method, inputs);
    if (!out.ok()) return fail(opt, r, 5, "warmup", "execution failed in warmup");
  }
#ifdef ET_BENCH_WITH_ETDUMP
  // The dump holds the timed iterations only: the load's and the warmup's events are dropped
  // here (the next execute starts a fresh run block). runner_version 2 marks this.
  if (!opt.etdump.empty()) {
    static_cast<executorch::etdump::ETDumpGen*>(module->event_tracer())->reset();
  }
#endif
  r.latencies_ms.reserve(static_cast<size_t>(opt.iterations));
  for (int i = 0; i < opt.iterations; ++i) {
    const auto t0 = Clock::now();
    auto out = module->execute(opt.method, inputs);
    const double dt = ms_since(t0);
    if (!out.ok()) return fail(opt, r, 5, "run", "execution failed in iteration " +
                                                    std::to_string(i));
    r.latencies_ms.push_back(dt);
    if (i == opt.iterations - 1) {
      r.num_outputs = out->size();
      if (!out->empty()) r.output_checksum = checksum((*out)[0]);
    }
  }

#ifdef ET_BENCH_WITH_ETDUMP
  if (!opt.etdump.empty()) {
    auto* gen = static_cast<executorch::etdump::ETDumpGen*>(module->event_tracer());
    executorch::etdump::ETDumpResult res = gen->get_etdump_data();
    if (res.buf != nullptr && res.size > 0) {
      std::ofstream f(opt.etdump, std::ios::binary | std::ios::trunc);
      f.write(static_cast<const char*>(res.buf), static_cast<std::streamsize>(res.size));
      std::free(res.buf);
      if (!f.good()) return fail(opt, r, 6, "etdump", "cannot write " + opt.etdump);
      r.etdump_path = opt.etdump;
    }
  }
#endif

  r.stage = "done";
  if (!write_report(opt, r)) {
    std::fprintf(stderr, "et_bench_runner: cannot write %s\n", opt.output.c_str());
    return 6;
  }
  return 0;
}
