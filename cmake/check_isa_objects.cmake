# The objects built for AVX2 or AVX-512 must define no weak symbol: the linker keeps one
# copy of each (an inline library function, a template instance) for every caller, and
# the copy compiled for AVX-512 would then crash baseline code on CPUs without it.
#   cmake -DNM=<nm> -DOBJECTS=<obj|obj> -P check_isa_objects.cmake
string(REPLACE "|" ";" OBJECTS "${OBJECTS}")
foreach(object IN LISTS OBJECTS)
  execute_process(COMMAND "${NM}" --defined-only -C "${object}" OUTPUT_VARIABLE symbols
                  RESULT_VARIABLE status)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "${NM} could not read ${object}")
  endif()
  string(REGEX MATCHALL "[^\n]* [WVu] [^\n]*" weak "${symbols}")
  list(FILTER weak EXCLUDE REGEX " DW\\.ref\\.")  # the C++ personality pointer: data only
  if(weak)
    list(JOIN weak "\n  " weak)
    message(FATAL_ERROR "${object} defines weak symbols, which may replace the baseline "
                        "copies; keep library templates out of the per-ISA kernels "
                        "(csrc/attention_kernels.hpp):\n  ${weak}")
  endif()
endforeach()
