# What an operator sees: mlxctl status, mlxd --metrics (promtool, a real
# Prometheus), the ipc path limit and mlxctl's hints. Included from
# CMakeLists.txt (after IT_ENV); each test is the function of ops.sh named
# like it. A test whose tool is missing (promtool, prometheus, curl, jq,
# tmux) exits 77 and shows as skipped.

set(OPS_IT_ENV ${IT_ENV} SUM_BIN=$<TARGET_FILE:sum>)

function(mlxd_ops_test name timeout)
  add_test(NAME ${name} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/ops.sh ${name})
  set_tests_properties(${name} PROPERTIES
    TIMEOUT ${timeout}
    LABELS integration
    SKIP_RETURN_CODE 77
    ENVIRONMENT "${OPS_IT_ENV}")
endfunction()

mlxd_ops_test(status_ids_are_16_hex_digits_everywhere 60)
mlxd_ops_test(status_shows_a_stall_only_after_a_second 60)
mlxd_ops_test(status_keeps_recent_jobs_with_their_result 120)
mlxd_ops_test(status_shows_usage_age_rate_and_command_lines 60)
mlxd_ops_test(status_text_fits_80_columns 60)
mlxd_ops_test(status_watch_redraws_in_place_and_exits_0_on_ctrl_c 90)
mlxd_ops_test(metrics_pass_promtool_check_and_count_errors_by_code 60)
mlxd_ops_test(metrics_are_scraped_by_a_real_prometheus 180)
mlxd_ops_test(metrics_are_off_by_default_and_refuse_bad_addresses 60)
mlxd_ops_test(ipc_path_limit_is_103_bytes_everywhere 60)
mlxd_ops_test(hints_suggest_only_what_mlxd_accepts 60)
