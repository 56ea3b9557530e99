# Nonblocking ops (DESIGN.md, "Nonblocking operations"): requests in flight
# matched in issue order, polling, the daemon's cap, freeing a group with
# requests in flight, a peer dying with requests in flight. On one daemon
# (nonblocking.sh) and on two under mpirun (nonblocking_multihost.sh, with
# multihost.sh's harness and resource lock). mlxd_script_tests() is
# lifetime.cmake's.

add_executable(it_nbcheck nbcheck.c)
target_link_libraries(it_nbcheck PRIVATE mlxd_client it_testclient)

set(NBCHECK_ENV NBCHECK_BIN=$<TARGET_FILE:it_nbcheck>)
mlxd_script_tests(nonblocking.sh 240 OFF "${NBCHECK_ENV}"
  requests_in_flight_match_in_issue_order_on_one_daemon
  polled_request_is_done_once_every_member_issued_it_on_one_daemon
  requests_over_max_inflight_per_client_get_enomem
  group_free_waits_for_requests_in_flight
  peer_dying_with_requests_in_flight_fails_only_what_cannot_complete_on_one_daemon)
mlxd_script_tests(nonblocking_multihost.sh 300 ON "${NBCHECK_ENV}"
  requests_in_flight_match_in_issue_order_on_two_daemons
  polled_request_is_done_once_every_member_issued_it_on_two_daemons
  peer_dying_with_requests_in_flight_fails_only_what_cannot_complete_on_two_daemons)
