# Multi-host integration tests: several mlxd daemons under one mpirun on this
# machine stand in for hosts, each on its own socket; jobs spread their ranks
# over them. Each test is one function of multihost.sh (named like the test),
# which starts and stops its own world. They share one resource lock, so that
# no two mpirun worlds run at once.

# A client for the behaviours of jobs spread over daemons (public API only).
add_executable(it_mhclient mhclient.c)
target_link_libraries(it_mhclient PRIVATE mlxd_client it_testclient)

# Whether this build is sanitized: then RSS bounds say nothing (shadow memory).
if(MLXD_SANITIZE)
  set(MH_SANITIZED 1)
else()
  set(MH_SANITIZED 0)
endif()
set(MH_ENV
  MLXD_SANITIZED=${MH_SANITIZED}
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

# mlxd_test_hosts_test(NAME TIMEOUT): the function NAME of multihost.sh on
# test hosts (tests/hosts: a network namespace, host name and /run/mlxd per
# host, TCP only between the daemons), as NAME_on_test_hosts. They need root
# and iproute2; without them they are skipped (exit 77). They share the lock
# test_hosts with every test that makes hosts, and mpi with the other worlds.
function(mlxd_test_hosts_test name timeout)
  add_test(NAME ${name}_on_test_hosts
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/multihost.sh ${name} --test-hosts)
  set_tests_properties(${name}_on_test_hosts PROPERTIES
    TIMEOUT ${timeout}
    LABELS "integration;multihost;test_hosts"
    RESOURCE_LOCK "mpi;test_hosts"
    SKIP_RETURN_CODE 77
    ENVIRONMENT "${MH_ENV}")
endfunction()

# Every op, dtype and shape, with a job's ranks on several daemons.
mlxd_multihost_test(two_daemons_all_ops_even 180)
mlxd_multihost_test(three_daemons_all_ops_uneven 120)
mlxd_multihost_test(three_daemons_five_ranks_blocks 180)
mlxd_multihost_test(split_spans_and_stays 120)
mlxd_multihost_test(large_all_sum_across_hosts 180)
mlxd_multihost_test(large_integer_all_sum_wraps_exactly_across_hosts 600)
mlxd_multihost_test(client_killed_mid_pipelined_op_leaves_the_daemon_serving 400)
mlxd_multihost_test(split_after_freed_split_works_on_every_host 120)

# Jobs that cross each other on the daemons.
mlxd_multihost_test(two_jobs_opposite_order_do_not_deadlock 120)

# Members that disagree, die or are missing, on different daemons.
mlxd_multihost_test(mismatch_across_hosts_gives_emismatch_everywhere 60)
mlxd_multihost_test(killed_rank_on_one_daemon_gives_epeer_on_others 120)
mlxd_multihost_test(missing_rank_across_hosts_times_out_naming_it 60)

# The world as mlxctl and the OS see it.
mlxd_multihost_test(job_split_over_daemons_forms_and_status_world_shows_all 60)
mlxd_multihost_test(idle_world_sleeps 60)

# The same over TCP, between test hosts.
mlxd_test_hosts_test(three_daemons_five_ranks_blocks 600)
mlxd_test_hosts_test(daemons_on_test_hosts_yield_when_idle 120)
mlxd_test_hosts_test(split_spans_and_stays 400)
mlxd_test_hosts_test(split_after_freed_split_works_on_every_host 120)
mlxd_test_hosts_test(split_freed_at_once_completes_on_three_daemons 400)
set_property(TEST split_freed_at_once_completes_on_three_daemons_on_test_hosts APPEND PROPERTY
  ENVIRONMENT "LIFECHECK_BIN=$<TARGET_FILE:it_lifecheck>")
mlxd_test_hosts_test(two_jobs_opposite_order_do_not_deadlock 200)
mlxd_test_hosts_test(mismatch_across_hosts_gives_emismatch_everywhere 120)
mlxd_test_hosts_test(killed_rank_on_one_daemon_gives_epeer_on_others 200)
mlxd_test_hosts_test(missing_rank_across_hosts_times_out_naming_it 120)
mlxd_test_hosts_test(job_split_over_daemons_forms_and_status_world_shows_all 120)

# Hosts lost or cut off: errors naming the host, fast, and a world that
# recovers or exits (test hosts only: they kill a host, cut a link).
mlxd_test_hosts_test(lost_host_gives_every_surviving_rank_an_error_naming_it 120)
mlxd_test_hosts_test(lost_host_fails_a_forming_job_at_once_naming_it 150)
mlxd_test_hosts_test(link_cut_gives_both_sides_an_error_and_the_world_recovers 180)
mlxd_test_hosts_test(heartbeat_timeout_sets_how_soon_a_silent_host_is_lost 120)
mlxd_test_hosts_test(stalled_mpi_call_exits_the_world_non_zero 120)
mlxd_test_hosts_test(busy_coordinator_host_leaves_deadlines_to_each_daemon 400)
