# Runs one melgraph command line and checks both its exit code and its output, which
# PASS_REGULAR_EXPRESSION alone cannot do (it ignores the exit code).
#   cmake -DEXE=<melgraph> -DARGS=<a,b,c> -DRC=<expected exit code> -DREGEX=<regex> -P cli_expect.cmake
string(REPLACE "," ";" _args "${ARGS}")
execute_process(COMMAND "${EXE}" ${_args} RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _err)
message("exit code ${_rc}\n--- stdout\n${_out}--- stderr\n${_err}")
if(NOT _rc STREQUAL "${RC}")
  message(FATAL_ERROR "expected exit code ${RC}, got ${_rc}")
endif()
if(NOT "${_out}${_err}" MATCHES "${REGEX}")
  message(FATAL_ERROR "output does not match: ${REGEX}")
endif()
