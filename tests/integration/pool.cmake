# The worker pool: bulk copies and reductions on every core, and sends
# copied once. Included from CMakeLists.txt (after IT_ENV); each test is the
# function of pool.sh named like it.

add_executable(it_poolcheck poolcheck.c)
target_link_libraries(it_poolcheck PRIVATE mlxd_client it_testclient)

set(POOL_IT_ENV ${IT_ENV} POOLCHECK_BIN=$<TARGET_FILE:it_poolcheck>)

# mlxd_pool_test(NAME TIMEOUT): runs the function NAME of pool.sh.
function(mlxd_pool_test name timeout)
  add_test(NAME ${name} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/pool.sh ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${timeout} LABELS integration ENVIRONMENT "${POOL_IT_ENV}")
endfunction()

mlxd_pool_test(every_op_is_bit_equal_on_one_thread_and_on_four 400)
mlxd_pool_test(pool_threads_do_part_of_a_large_all_sum 150)
mlxd_pool_test(send_to_a_waiting_receiver_goes_straight_to_it 90)
mlxd_pool_test(workers_option_refuses_bad_counts 30)
