# Debian packages, built by CPack from the install rules below: `cd build && cpack -G DEB`.
#
#   knit              knitd (/usr/sbin), knit (/usr/bin), knitd.service, the knit group
#                     (sysusers.d), tmpfiles.d, completion
#   knit-coordinator  knit-coordinator (/usr/bin), its service, sysusers.d + tmpfiles.d, completion
#   knit-relay        knit-relay (/usr/bin), its service, sysusers.d + tmpfiles.d, completion
#                     (only when the knit-relay target exists)
#
# One install component per package (CPACK_DEB_COMPONENT_INSTALL). knitd goes to /usr/sbin: it is
# a system daemon only root (or CAP_NET_ADMIN) can run; the CLIs a person types go to /usr/bin.
# Runtime dependencies come from dpkg-shlibdeps (libsodium23, libsqlite3-0, libssl3, ...), so
# the packages need nothing but Debian's own libraries; bash-completion is recommended and
# wireguard-tools only suggested (`wg` works with knitd, which needs no kernel module: a
# Recommends would pull a kernel into containers through wireguard-modules). Config files in
# /etc/knit are conffiles.
# Maintainer scripts (packaging/debian/*.in) create the system accounts with systemd-sysusers and
# the directories with systemd-tmpfiles, and handle the units as dh_installsystemd would
# (deb-systemd-helper, deb-systemd-invoke): knitd is enabled and started on a fresh install (it
# idles until `knit up`), the coordinator and the relay only once an admin enables them, since
# both need configuration first; purge removes every enablement link either way.
# Each package carries /usr/share/doc/PACKAGE/{copyright,changelog.Debian.gz} and its lintian
# overrides (packaging/lintian/PACKAGE, each override justified there); packages_test.sh runs
# lintian on all three.

set(KNIT_PACKAGING_DIR ${PROJECT_SOURCE_DIR}/packaging)
set(KNIT_UNIT_DIR /lib/systemd/system)  # Debian 12's systemd unit directory
set(KNIT_COMPLETION_DIR share/bash-completion/completions)

# knit_package_scripts(COMPONENT PACKAGE UNIT USER START STATE_DIR CONFFILES...): postinst,
# prerm, postrm and conffiles for one package, into CPACK_DEBIAN_<COMPONENT>_PACKAGE_CONTROL_EXTRA.
function(knit_package_scripts component package unit user start state_dir)
  set(dir ${PROJECT_BINARY_DIR}/packaging/debian/${package})
  set(KNIT_PACKAGE ${package})
  set(KNIT_UNIT ${unit})
  set(KNIT_USER "${user}")
  set(KNIT_START_ON_INSTALL ${start})
  set(KNIT_STATE_DIR ${state_dir})
  if(start STREQUAL "yes")
    set(KNIT_START_NOTE "enables and starts ${unit}")
  else()
    set(KNIT_START_NOTE "leaves ${unit} disabled until configured")
  endif()
  foreach(script postinst prerm postrm)
    configure_file(${KNIT_PACKAGING_DIR}/debian/${script}.in ${dir}/${script} @ONLY
                   FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ
                                    GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
  endforeach()
  list(JOIN ARGN "\n" conffiles)
  file(WRITE ${dir}/conffiles "${conffiles}\n")
  string(TOUPPER ${component} upper)
  set(CPACK_DEBIAN_${upper}_PACKAGE_CONTROL_EXTRA
      ${dir}/conffiles ${dir}/postinst ${dir}/prerm ${dir}/postrm PARENT_SCOPE)
endfunction()

# knit_package_docs(COMPONENT PACKAGE): what Debian policy wants in every package (copyright,
# a compressed changelog) and the package's lintian overrides.
set(KNIT_CHANGELOG_GZ ${PROJECT_BINARY_DIR}/packaging/debian/changelog.Debian.gz)
configure_file(${KNIT_PACKAGING_DIR}/debian/changelog.in
               ${PROJECT_BINARY_DIR}/packaging/debian/changelog @ONLY)
# gzip -9n: maximal compression, no name or timestamp in the header (lintian checks both).
execute_process(COMMAND gzip -9nc ${PROJECT_BINARY_DIR}/packaging/debian/changelog
                OUTPUT_FILE ${KNIT_CHANGELOG_GZ} COMMAND_ERROR_IS_FATAL ANY)
function(knit_package_docs component package)
  install(FILES ${KNIT_PACKAGING_DIR}/debian/copyright ${KNIT_CHANGELOG_GZ}
          DESTINATION share/doc/${package} COMPONENT ${component})
  if(EXISTS ${KNIT_PACKAGING_DIR}/lintian/${package})
    install(FILES ${KNIT_PACKAGING_DIR}/lintian/${package} DESTINATION share/lintian/overrides
            COMPONENT ${component})
  endif()
endfunction()

# knit_manpage(COMPONENT TARGET SECTION SUMMARY): TARGET's manual page, made at build time by
# help2man from the program's own --help (packaging/man/make-man.sh), installed in COMPONENT.
find_program(KNIT_HELP2MAN help2man)
if(NOT KNIT_HELP2MAN)
  message(WARNING "help2man not found (scripts/setup.sh installs it): packages lack manual pages")
endif()
function(knit_manpage component target section summary)
  if(NOT KNIT_HELP2MAN)
    return()
  endif()
  set(page ${PROJECT_BINARY_DIR}/packaging/man/${target}.${section}.gz)
  add_custom_command(
    OUTPUT ${page}
    COMMAND ${KNIT_PACKAGING_DIR}/man/make-man.sh $<TARGET_FILE_DIR:${target}> ${target}
            ${section} ${summary} ${page}
    DEPENDS ${target} ${KNIT_PACKAGING_DIR}/man/make-man.sh
    COMMENT "Manual page ${target}(${section})"
    VERBATIM)
  add_custom_target(${target}_manpage ALL DEPENDS ${page})
  install(FILES ${page} DESTINATION share/man/man${section} COMPONENT ${component})
endfunction()

# knit: the agent and its CLI.
set(KNIT_PACKAGE_COMPONENTS)
if(TARGET knitd AND TARGET knit)
  install(TARGETS knitd RUNTIME DESTINATION sbin COMPONENT agent)
  install(TARGETS knit RUNTIME DESTINATION bin COMPONENT agent)
  install(FILES ${KNIT_PACKAGING_DIR}/systemd/knitd.service DESTINATION ${KNIT_UNIT_DIR}
          COMPONENT agent)
  install(FILES ${KNIT_PACKAGING_DIR}/sysusers.d/knit.conf DESTINATION lib/sysusers.d
          COMPONENT agent)
  install(FILES ${KNIT_PACKAGING_DIR}/tmpfiles.d/knit.conf DESTINATION lib/tmpfiles.d
          COMPONENT agent)
  install(FILES ${KNIT_PACKAGING_DIR}/config/knitd.conf DESTINATION /etc/knit COMPONENT agent)
  install(FILES ${KNIT_PACKAGING_DIR}/bash-completion/knit DESTINATION ${KNIT_COMPLETION_DIR}
          COMPONENT agent)
  install(FILES ${KNIT_PACKAGING_DIR}/bash-completion/knit DESTINATION ${KNIT_COMPLETION_DIR}
          RENAME knitd COMPONENT agent)
  knit_package_scripts(agent knit knitd.service "" yes /var/lib/knit /etc/knit/knitd.conf)
  knit_package_docs(agent knit)
  knit_manpage(agent knitd 8 "Knit mesh VPN agent")
  knit_manpage(agent knit 1 "control the Knit mesh VPN agent")
  list(APPEND KNIT_PACKAGE_COMPONENTS agent)
endif()

# knit-coordinator and knit-relay: a server, its system user, its unit.
macro(knit_server_package component package target config summary)
  install(TARGETS ${target} RUNTIME DESTINATION bin COMPONENT ${component})
  install(FILES ${KNIT_PACKAGING_DIR}/systemd/${package}.service DESTINATION ${KNIT_UNIT_DIR}
          COMPONENT ${component})
  install(FILES ${KNIT_PACKAGING_DIR}/sysusers.d/${package}.conf DESTINATION lib/sysusers.d
          COMPONENT ${component})
  install(FILES ${KNIT_PACKAGING_DIR}/tmpfiles.d/${package}.conf DESTINATION lib/tmpfiles.d
          COMPONENT ${component})
  install(FILES ${KNIT_PACKAGING_DIR}/bash-completion/knit DESTINATION ${KNIT_COMPLETION_DIR}
          RENAME ${package} COMPONENT ${component})
  knit_package_scripts(${component} ${package} ${package}.service ${package} no
                       /var/lib/${package} /etc/knit/${config})
  knit_package_docs(${component} ${package})
  knit_manpage(${component} ${target} 1 "${summary}")
  list(APPEND KNIT_PACKAGE_COMPONENTS ${component})
endmacro()

if(TARGET knit-coordinator)
  knit_server_package(coordinator knit-coordinator knit-coordinator coordinator.conf
                      "Knit mesh VPN coordinator")
  install(FILES ${KNIT_PACKAGING_DIR}/config/coordinator.conf DESTINATION /etc/knit
          COMPONENT coordinator)
endif()
if(TARGET knit-relay)
  knit_server_package(relay knit-relay knit-relay relay.conf "Knit mesh VPN relay")
  # It holds the relay token.
  install(FILES ${KNIT_PACKAGING_DIR}/config/relay.conf DESTINATION /etc/knit
          PERMISSIONS OWNER_READ OWNER_WRITE COMPONENT relay)
endif()

set(CPACK_PACKAGE_NAME knit)
set(CPACK_PACKAGE_VENDOR "Knit")
set(CPACK_PACKAGE_CONTACT "Knit maintainers <maintainers@knit.invalid>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "self-hostable mesh VPN speaking WireGuard")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_COMPONENTS_ALL ${KNIT_PACKAGE_COMPONENTS})

set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://knit.invalid/")

set(CPACK_DEBIAN_AGENT_PACKAGE_NAME knit)
set(CPACK_DEBIAN_AGENT_PACKAGE_SECTION net)
set(CPACK_DEBIAN_AGENT_PACKAGE_RECOMMENDS "bash-completion")
set(CPACK_DEBIAN_AGENT_PACKAGE_SUGGESTS "wireguard-tools")
set(CPACK_DEBIAN_COORDINATOR_PACKAGE_RECOMMENDS "bash-completion")
set(CPACK_DEBIAN_RELAY_PACKAGE_RECOMMENDS "bash-completion")
set(CPACK_COMPONENT_AGENT_DESCRIPTION
    "Knit mesh VPN agent (knitd) and its CLI (knit)\n knitd joins this host to a Knit mesh with one token and speaks the WireGuard\n protocol; `knit up`, `knit status` and `knit ping` drive it.")
set(CPACK_DEBIAN_COORDINATOR_PACKAGE_NAME knit-coordinator)
set(CPACK_COMPONENT_COORDINATOR_DESCRIPTION
    "Knit mesh VPN coordinator\n Hands out join tokens, addresses, the relay map and peer maps to the agents\n of a self-hosted Knit mesh (SQLite state).")
set(CPACK_DEBIAN_RELAY_PACKAGE_NAME knit-relay)
set(CPACK_COMPONENT_RELAY_DESCRIPTION
    "Knit mesh VPN relay\n Forwards sealed packets between Knit agents that cannot reach each other\n directly, and answers STUN.")

include(CPack)
