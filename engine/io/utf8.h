// UTF-8 validation as RFC 3629 defines it: no overlong forms, no surrogates (U+D800..DFFF),
// nothing above U+10FFFF. Text formats that are UTF-8 by definition (TOML) are checked whole
// before a parser sees them; messages use it to tell text from binary.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace mg {

// The length (1 to 4) of the valid UTF-8 sequence that starts at s[i], or 0 when none does.
size_t utf8_sequence_length(std::string_view s, size_t i);

// Whether every byte is below 0x80 (ASCII is UTF-8): a test eight bytes at a time, for
// callers that check every line of a large file and meet anything else rarely.
bool is_ascii(std::string_view s);

// The offset of the first byte that does not start a valid sequence; npos when s is valid.
size_t first_invalid_utf8(std::string_view s);

// s[i] as messages name a byte that is not UTF-8: "0xE9".
std::string hex_byte(std::string_view s, size_t i);

}  // namespace mg
