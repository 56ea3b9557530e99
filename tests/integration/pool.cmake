# The worker pool: bulk copies and reductions on every core, and sends
# copied once. Included from CMakeLists.txt (after lifetime.cmake, whose
# mlxd_script_tests it uses); each test is the function of pool.sh named
# like it.

add_executable(it_poolcheck poolcheck.c)
target_link_libraries(it_poolcheck PRIVATE mlxd_client it_testclient)

set(POOLCHECK_ENV POOLCHECK_BIN=$<TARGET_FILE:it_poolcheck>)
# Two opcheck runs, under ASan on a loaded machine: a generous deadline.
mlxd_script_tests(pool.sh 400 OFF "${POOLCHECK_ENV}"
  every_op_is_bit_equal_on_one_thread_and_on_four)
mlxd_script_tests(pool.sh 150 OFF "${POOLCHECK_ENV}"
  pool_threads_do_part_of_a_large_all_sum
  send_to_a_waiting_receiver_goes_straight_to_it
  workers_option_refuses_bad_counts)
