# The lifetime MLX programs rely on (DESIGN.md, "What MLX programs rely on"):
# init twice, splits freed at once, nothing accepted lost. Each behaviour on
# one daemon (lifetime.sh) and on two under mpirun (lifetime_multihost.sh,
# which uses multihost.sh's harness and shares its resource lock).

add_executable(it_lifecheck lifecheck.c)
target_link_libraries(it_lifecheck PRIVATE mlxd_client it_testclient)

# mlxd_script_tests(SCRIPT TIMEOUT MULTIHOST ENV NAME...): each NAME runs
# the function NAME of SCRIPT, with the harness's variables and ENV; with
# MULTIHOST set, under multihost.sh's environment and resource lock.
function(mlxd_script_tests script timeout multihost env)
  foreach(t ${ARGN})
    add_test(NAME ${t} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/${script} ${t})
    if(multihost)
      set_tests_properties(${t} PROPERTIES TIMEOUT ${timeout} LABELS "integration;multihost" RESOURCE_LOCK mpi
                           ENVIRONMENT "${MH_ENV};${env}")
    else()
      set_tests_properties(${t} PROPERTIES TIMEOUT ${timeout} LABELS integration ENVIRONMENT "${IT_ENV};${env}")
    endif()
  endforeach()
endfunction()

set(LIFECHECK_ENV LIFECHECK_BIN=$<TARGET_FILE:it_lifecheck>)
mlxd_script_tests(lifetime.sh 180 OFF "${LIFECHECK_ENV}"
  init_twice_gives_one_member_on_one_daemon
  split_freed_at_once_completes_for_every_member_on_one_daemon
  ring_that_frees_and_exits_delivers_every_message_on_one_daemon
  send_then_sigkill_is_delivered_on_one_daemon
  collective_contributed_then_killed_completes_on_one_daemon)
mlxd_script_tests(lifetime_multihost.sh 240 ON "${LIFECHECK_ENV}"
  init_twice_gives_one_member_on_two_daemons
  split_freed_at_once_completes_for_every_member_on_two_daemons
  ring_that_frees_and_exits_delivers_every_message_on_two_daemons
  send_then_sigkill_is_delivered_on_two_daemons
  collective_contributed_then_killed_completes_on_two_daemons)
