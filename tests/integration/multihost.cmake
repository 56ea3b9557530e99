# Multi-host integration tests: several mlxd daemons under one mpirun on this
# machine stand in for hosts, each on its own socket; jobs spread their ranks
# over them. Each test is one function of multihost.sh (named like the test),
# which starts and stops its own world. They share one resource lock, so that
# no two mpirun worlds run at once.

# A client for the behaviours of jobs spread over daemons (public API only).
add_executable(it_mhclient mhclient.c)
target_link_libraries(it_mhclient PRIVATE mlxd_client it_testclient)

set(MH_ENV
  MLXD_BIN=$<TARGET_FILE:mlxd>
  MLXCTL_BIN=$<TARGET_FILE:mlxctl>
  OPCHECK_BIN=$<TARGET_FILE:it_opcheck>
  ERRCASE_BIN=$<TARGET_FILE:it_errcase>
  MHCLIENT_BIN=$<TARGET_FILE:it_mhclient>
  MPIRUN=${MPIEXEC_EXECUTABLE})

# mlxd_multihost_test(NAME TIMEOUT): runs the function NAME of multihost.sh.
function(mlxd_multihost_test name timeout)
  add_test(NAME ${name} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/multihost.sh ${name})
  set_tests_properties(${name} PROPERTIES
    TIMEOUT ${timeout}
    LABELS "integration;multihost"
    RESOURCE_LOCK mpi
    ENVIRONMENT "${MH_ENV}")
endfunction()

# Every op, dtype and shape, with a job's ranks on several daemons.
mlxd_multihost_test(two_daemons_all_ops_even 180)
mlxd_multihost_test(three_daemons_all_ops_uneven 120)
mlxd_multihost_test(three_daemons_five_ranks_blocks 180)
mlxd_multihost_test(split_spans_and_stays 120)
mlxd_multihost_test(large_all_sum_across_hosts 180)

# Jobs that cross each other on the daemons.
mlxd_multihost_test(two_jobs_opposite_order_do_not_deadlock 120)

# Members that disagree, die or are missing, on different daemons.
mlxd_multihost_test(mismatch_across_hosts_gives_emismatch_everywhere 60)
mlxd_multihost_test(killed_rank_on_one_daemon_gives_epeer_on_others 120)
mlxd_multihost_test(missing_rank_across_hosts_times_out_naming_it 60)

# The world as mlxctl and the OS see it.
mlxd_multihost_test(job_split_over_daemons_forms_and_status_world_shows_all 60)
mlxd_multihost_test(idle_world_sleeps 60)
