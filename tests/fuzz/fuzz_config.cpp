// The TOML run configuration (engine/config.h) on arbitrary text: toml11's parser, then
// melgraph's field reader and range checks. A bad config must end in ConfigError (the CLI's
// exit code 2 with the message); any other exception, a crash or a sanitizer report is a
// finding. A config that parses must also survive the round trip that checkpoints rely on:
// to_toml() of it parses again to the same canonical text.
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  mg::Config config;
  try {
    config = mg::parse_config(text, "fuzz.toml");
  } catch (const mg::ConfigError&) {
    return 0;
  }
  // Not caught: a checkpoint stores to_toml(config), so a config that loads once but not
  // from its own canonical text would be a checkpoint that cannot be reloaded.
  const std::string canonical = mg::to_toml(config);
  if (mg::to_toml(mg::parse_config(canonical, "canonical.toml")) != canonical) __builtin_trap();
  return 0;
}
