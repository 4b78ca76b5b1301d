// JSON as melgraph prints and stores it. A Linux file name is bytes, not necessarily UTF-8,
// and nlohmann::json throws on a string that is not UTF-8 when it writes it: one such path
// would fail a whole --json answer or report after the work was done. Here such bytes become
// U+FFFD (the catalog's other fields are UTF-8 by the time they get here: graph/catalog.h).
#pragma once
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace mg {

// j as text: one line when indent < 0, else pretty-printed with that many spaces per level.
std::string json_text(const nlohmann::json& j, int indent = -1);
std::string json_text(const nlohmann::ordered_json& j, int indent = -1);

}  // namespace mg
