# Installs the build tree into a scratch prefix, then configures, builds and runs the consumer.
file(REMOVE_RECURSE ${KDLOSS_SCRATCH})
function(run_step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message(STATUS "${out}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
endfunction()
run_step(${CMAKE_COMMAND} --install ${KDLOSS_BUILD_DIR} --prefix ${KDLOSS_SCRATCH}/prefix)
run_step(${CMAKE_COMMAND} -S ${KDLOSS_CONSUMER_SOURCE} -B ${KDLOSS_SCRATCH}/build -G ${KDLOSS_GENERATOR}
         -DCMAKE_PREFIX_PATH=${KDLOSS_SCRATCH}/prefix -DCMAKE_BUILD_TYPE=Release)
run_step(${CMAKE_COMMAND} --build ${KDLOSS_SCRATCH}/build)
run_step(${KDLOSS_SCRATCH}/build/consumer)
