# mlxctl launch: the daemon check, --socket, interrupts, restarts and ranks on
# other hosts (through tests/integration/fake-rsh, a local rsh agent). Each
# test is one function of launch_cases.sh, named like the test.
function(mlxd_launch_test name timeout)
  add_test(NAME ${name} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/launch_cases.sh ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${timeout} LABELS integration ENVIRONMENT "${IT_ENV}")
endfunction()

# Without a daemon, and with --socket.
mlxd_launch_test(launch_without_daemon_refuses_with_the_start_hint 30)
mlxd_launch_test(launch_with_daemons_refuses_when_one_does_not_answer 60)
mlxd_launch_test(launch_allow_singleton_runs_ranks_as_groups_of_one 30)
mlxd_launch_test(launch_socket_names_the_daemon_of_every_rank 60)

# Ctrl-C, and starting the job again after a failure.
mlxd_launch_test(launch_ctrl_c_is_an_interrupt_not_a_rank_failure 60)
mlxd_launch_test(launch_max_restarts_runs_a_new_job_after_a_failure 90)
mlxd_launch_test(launch_max_restarts_gives_up_with_the_last_failure 60)

# Ranks on other hosts.
mlxd_launch_test(launch_hosts_places_ranks_in_blocks_of_slots 60)
mlxd_launch_test(launch_hostfile_and_repeat_hosts_place_ranks 60)
mlxd_launch_test(launch_hosts_env_and_cwd_reach_every_rank 60)
mlxd_launch_test(launch_hosts_runs_a_real_job 60)
mlxd_launch_test(launch_hosts_rank_without_its_daemon_fails_naming_the_host 60)
mlxd_launch_test(launch_hosts_failing_rank_stops_ranks_on_every_host 60)
mlxd_launch_test(launch_hosts_ctrl_c_stops_ranks_on_every_host 60)

# Remote ranks on a world of two daemons under mpirun, one per stand-in host.
add_test(NAME launch_hostfile_runs_a_job_across_a_world_of_two
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/launch_multihost.sh launch_hostfile_runs_a_job_across_a_world_of_two)
set_tests_properties(launch_hostfile_runs_a_job_across_a_world_of_two PROPERTIES
  TIMEOUT 180 LABELS "integration;multihost" RESOURCE_LOCK mpi ENVIRONMENT "${MH_ENV}")
