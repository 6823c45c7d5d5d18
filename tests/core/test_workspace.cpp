// Workspace carving (CUB's two-phase idiom) and the checks on a caller's workspace.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "kdloss/core/workspace.hpp"

using namespace kdloss;
using kdloss::detail::align_up;
using kdloss::detail::Carver;
using kdloss::detail::HostScratch;
using kdloss::detail::kWorkspaceAlignment;
using kdloss::detail::resolve_workspace;

namespace {

std::uintptr_t address(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

/// The carving sequence of a hypothetical call, run once to count and once to carve.
struct Pieces {
  float* a;
  double* b;
  char* empty;
  std::int64_t* c;
};
Pieces carve(Carver& carver) {
  Pieces p{};
  p.a = carver.take<float>(10);         // 40 bytes -> one 256-byte slot
  p.b = carver.take<double>(100);       // 800 bytes -> four slots
  p.empty = carver.take<char>(0);       // takes nothing
  p.c = carver.take<std::int64_t>(32);  // exactly one slot
  return p;
}

std::string message_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("align_up rounds up to the workspace alignment") {
  CHECK(kWorkspaceAlignment == 256);
  CHECK(align_up(0) == 0);
  CHECK(align_up(1) == 256);
  CHECK(align_up(256) == 256);
  CHECK(align_up(257) == 512);
  CHECK(align_up(5, 4) == 8);
}

TEST_CASE("Carver: a null base counts the same bytes the real carving uses") {
  Carver counter;
  const Pieces counted = carve(counter);
  CHECK(counted.a == nullptr);
  CHECK(counted.b == nullptr);
  CHECK(counted.c == nullptr);
  CHECK(counter.bytes() == 256 + 1024 + 256);
  CHECK(Carver().bytes() == 0);

  alignas(256) static unsigned char buffer[2048];
  std::memset(buffer, 0, sizeof buffer);
  Carver carver(buffer);
  const Pieces p = carve(carver);
  CHECK(carver.bytes() == counter.bytes());
  CHECK(address(p.a) == address(buffer));
  CHECK(address(p.b) == address(buffer) + 256);
  CHECK(address(p.empty) == address(buffer) + 1280);
  CHECK(address(p.c) == address(buffer) + 1280);
  for (const void* piece : {static_cast<const void*>(p.a), static_cast<const void*>(p.b),
                            static_cast<const void*>(p.c)})
    CHECK(address(piece) % kWorkspaceAlignment == 0);

  // Pieces do not overlap: writing each one fully leaves the others intact.
  for (int i = 0; i < 10; ++i) p.a[i] = 1.0f;
  for (int i = 0; i < 100; ++i) p.b[i] = 2.0;
  for (int i = 0; i < 32; ++i) p.c[i] = 3;
  CHECK(p.a[9] == 1.0f);
  CHECK(p.b[0] == 2.0);
  CHECK(p.b[99] == 2.0);
  CHECK(p.c[0] == 3);
}

TEST_CASE("HostScratch returns aligned, writable memory of the requested size") {
  HostScratch scratch;
  CHECK(scratch.get(0) == nullptr);
  for (std::size_t bytes : {std::size_t{1}, std::size_t{255}, std::size_t{1000}, std::size_t{1} << 20}) {
    void* p = scratch.get(bytes);
    REQUIRE(p != nullptr);
    CHECK(address(p) % kWorkspaceAlignment == 0);
    std::memset(p, 0xab, bytes);  // the sanitizer build catches a short buffer here
    CHECK(static_cast<unsigned char*>(p)[bytes - 1] == 0xab);
  }
}

TEST_CASE("resolve_workspace accepts what the call needs and rejects the rest with a clear message") {
  HostScratch scratch;
  alignas(256) static unsigned char buffer[1024];

  SUBCASE("nothing needed: no workspace is used, even on the GPU") {
    CHECK(resolve_workspace("f", Device::cuda(), Workspace{}, 0, scratch) == nullptr);
    CHECK(resolve_workspace("f", Device::host(), Workspace{buffer, 1024}, 0, scratch) == nullptr);
  }
  SUBCASE("host with no workspace: allocates its own") {
    void* p = resolve_workspace("f", Device::host(), Workspace{}, 300, scratch);
    REQUIRE(p != nullptr);
    CHECK(address(p) % kWorkspaceAlignment == 0);
  }
  SUBCASE("a large enough, aligned workspace is used as given") {
    CHECK(resolve_workspace("f", Device::host(), Workspace{buffer, 1024}, 1024, scratch) == buffer);
    CHECK(resolve_workspace("f", Device::cuda(), Workspace{buffer, 1024}, 512, scratch) == buffer);
  }
  SUBCASE("GPU with no workspace") {
    const auto msg = message_of([&] { resolve_workspace("kdloss::thing", Device::cuda(1), Workspace{}, 4096, scratch); });
    CHECK(msg.find("kdloss::thing") != std::string::npos);
    CHECK(msg.find("'workspace' is null") != std::string::npos);
    CHECK(msg.find("cuda:1") != std::string::npos);
    CHECK(msg.find("4096 bytes") != std::string::npos);
    CHECK(msg.find("workspace_bytes") != std::string::npos);  // says how to size it
  }
  SUBCASE("too small") {
    const auto msg = message_of([&] { resolve_workspace("kdloss::thing", Device::cuda(), Workspace{buffer, 511}, 512, scratch); });
    CHECK(msg.find("has 511 bytes") != std::string::npos);
    CHECK(msg.find("needs 512 bytes") != std::string::npos);
    CHECK_THROWS_AS(resolve_workspace("f", Device::host(), Workspace{buffer, 100}, 101, scratch), Error);
  }
  SUBCASE("misaligned") {
    const auto msg = message_of([&] { resolve_workspace("kdloss::thing", Device::cuda(), Workspace{buffer + 8, 1000}, 512, scratch); });
    CHECK(msg.find("aligned to 256 bytes") != std::string::npos);
  }
}
