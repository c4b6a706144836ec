# SPDX-License-Identifier: MIT
# Helpers shared by every library of the project: the optional-part switches
# (AUTO / ON / OFF) and the install of a library as a component of the CMake
# package "canceltoken" with a pkg-config file of its own.
#
# Design notes
#  - One mechanism for every library.  The core is installed by the same
#    ct_install_library() as the adapters; each call writes
#    <libdir>/cmake/canceltoken/canceltoken-<component>-targets.cmake (the
#    exported targets), canceltoken-<component>-deps.cmake (the CMake code
#    that finds what the targets link) and <libdir>/pkgconfig/<pc>.pc.
#    canceltokenConfig.cmake loads the core, then each requested component
#    (all installed ones when none is requested), and sets
#    canceltoken_<component>_FOUND, so that
#    find_package(canceltoken 0.2 REQUIRED COMPONENTS net uv) fails cleanly
#    for a component that was not built.
#  - Relocatable.  The exported targets are relative to the package file
#    (CMake does that), and each .pc file sets prefix from ${pcfiledir}, so
#    a tree installed with --prefix P, or copied elsewhere afterwards, still
#    points at itself.  Only an absolute CMAKE_INSTALL_LIBDIR or INCLUDEDIR
#    (a distribution's choice) gives absolute paths.
#  - Imported target names: canceltoken::<component> for the shared library
#    and canceltoken::<component>_static for the static one; the core is
#    canceltoken::canceltoken and canceltoken::canceltoken_static.  The same
#    names exist as ALIAS targets in the build tree, so a project that adds
#    this one with add_subdirectory() links the same names.

include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(CT_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/canceltoken)
# Components installed so far; canceltokenConfig.cmake gets the list.
set_property(GLOBAL PROPERTY CT_COMPONENTS "")

# ct_feature(VAR DESCRIPTION FOUND MISSING_TEXT)
#   VAR is an AUTO/ON/OFF cache switch.  Sets VAR_ENABLED in the caller:
#   OFF: not built, a status line says so.  AUTO: built when FOUND is true;
#   otherwise a status line says what is missing.  ON: built, and a missing
#   dependency is a configure error.
function(ct_feature var description found missing)
  set(v "${${var}}")
  string(TOUPPER "${v}" v)
  if(v STREQUAL "OFF" OR v STREQUAL "NO" OR v STREQUAL "FALSE" OR v STREQUAL "0")
    message(STATUS "${description}: off (${var}=OFF)")
    set(${var}_ENABLED OFF PARENT_SCOPE)
  elseif(found)
    message(STATUS "${description}: on")
    set(${var}_ENABLED ON PARENT_SCOPE)
  elseif(v STREQUAL "AUTO")
    message(STATUS "${description}: skipped, ${missing} "
      "(-D${var}=OFF to leave it out, =ON to require it)")
    set(${var}_ENABLED OFF PARENT_SCOPE)
  else()
    message(FATAL_ERROR "${description}: ${var}=${${var}} but ${missing}")
  endif()
endfunction()

# ct_option(VAR DOC): declare an AUTO/ON/OFF switch (default AUTO).
macro(ct_option var doc)
  set(${var} AUTO CACHE STRING "${doc} (AUTO, ON or OFF)")
  set_property(CACHE ${var} PROPERTY STRINGS AUTO ON OFF)
endmacro()

# ct_install_library(COMPONENT
#     SHARED target STATIC target
#     [HEADERS file...] [DESCRIPTION text] [PC_NAME name]
#     [PC_REQUIRES mods] [PC_REQUIRES_PRIVATE mods] [PC_LIBS_PRIVATE flags]
#     [FIND_DEPENDENCIES cmake-code])
# Installs both libraries, the headers, a pkg-config file (PC_NAME, default
# canceltoken-COMPONENT) and the component's part of the CMake package.
# FIND_DEPENDENCIES is CMake code run by the consumer before the targets
# are loaded, with find_dependency() available: it must define every
# imported target the two libraries link (e.g. OpenSSL::Crypto).
function(ct_install_library component)
  cmake_parse_arguments(A "" "SHARED;STATIC;DESCRIPTION;PC_NAME;FIND_DEPENDENCIES"
    "HEADERS;PC_REQUIRES;PC_REQUIRES_PRIVATE;PC_LIBS_PRIVATE" ${ARGN})
  if(NOT A_PC_NAME)
    set(A_PC_NAME canceltoken-${component})
  endif()
  if(component STREQUAL "canceltoken")
    set(export_base canceltoken)
  else()
    set(export_base ${component})
  endif()

  # Names: the files keep their names (libcanceltoken_uv.so.0.2 ...); the
  # imported targets are canceltoken::<component>[_static].
  set_target_properties(${A_SHARED} PROPERTIES EXPORT_NAME ${export_base}
    VERSION ${PROJECT_VERSION} SOVERSION ${CT_SOVERSION}
    # Libraries next to each other find each other from any prefix.
    INSTALL_RPATH "$ORIGIN")
  set_target_properties(${A_STATIC} PROPERTIES EXPORT_NAME ${export_base}_static)
  if(NOT TARGET canceltoken::${export_base})
    add_library(canceltoken::${export_base} ALIAS ${A_SHARED})
  endif()
  if(NOT TARGET canceltoken::${export_base}_static)
    add_library(canceltoken::${export_base}_static ALIAS ${A_STATIC})
  endif()

  install(TARGETS ${A_SHARED} ${A_STATIC}
    EXPORT canceltoken-${component}-targets
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
    INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  if(A_HEADERS)
    install(FILES ${A_HEADERS} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  endif()
  install(EXPORT canceltoken-${component}-targets NAMESPACE canceltoken::
    DESTINATION ${CT_CMAKE_DIR})
  file(WRITE ${PROJECT_BINARY_DIR}/cmake/canceltoken-${component}-deps.cmake
    "# Generated: what the ${component} libraries link.\n${A_FIND_DEPENDENCIES}\n")
  install(FILES ${PROJECT_BINARY_DIR}/cmake/canceltoken-${component}-deps.cmake
    DESTINATION ${CT_CMAKE_DIR})

  # pkg-config: prefix relative to the .pc file's own directory.
  ct_pc_prefix(pc_prefix)
  string(REPLACE ";" " " CT_PC_REQUIRES "${A_PC_REQUIRES}")
  string(REPLACE ";" " " CT_PC_REQUIRES_PRIVATE "${A_PC_REQUIRES_PRIVATE}")
  string(REPLACE ";" " " CT_PC_LIBS_PRIVATE "${A_PC_LIBS_PRIVATE}")
  get_target_property(libname ${A_SHARED} OUTPUT_NAME)
  if(NOT libname)
    set(libname ${A_SHARED})
  endif()
  set(CT_PC_PREFIX "${pc_prefix}")
  set(CT_PC_NAME ${A_PC_NAME})
  set(CT_PC_DESCRIPTION "${A_DESCRIPTION}")
  set(CT_PC_LIB ${libname})
  ct_pc_dir(CT_PC_LIBDIR ${CMAKE_INSTALL_LIBDIR})
  ct_pc_dir(CT_PC_INCLUDEDIR ${CMAKE_INSTALL_INCLUDEDIR})
  configure_file(${PROJECT_SOURCE_DIR}/cmake/library.pc.in
    ${PROJECT_BINARY_DIR}/pkgconfig/${A_PC_NAME}.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/pkgconfig/${A_PC_NAME}.pc
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

  if(NOT component STREQUAL "canceltoken")
    set_property(GLOBAL APPEND PROPERTY CT_COMPONENTS ${component})
  endif()
endfunction()

# The prefix as seen from <libdir>/pkgconfig: ${pcfiledir}/../.. for
# lib/pkgconfig, one more ".." per extra level of CMAKE_INSTALL_LIBDIR.
function(ct_pc_prefix out)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
    set(${out} "${CMAKE_INSTALL_PREFIX}" PARENT_SCOPE)
    return()
  endif()
  set(p "\${pcfiledir}/..")
  string(REPLACE "/" ";" parts "${CMAKE_INSTALL_LIBDIR}")
  foreach(part IN LISTS parts)
    if(NOT part STREQUAL "" AND NOT part STREQUAL ".")
      string(APPEND p "/..")
    endif()
  endforeach()
  set(${out} "${p}" PARENT_SCOPE)
endfunction()

# A directory for a .pc file: ${prefix}/DIR, or DIR itself if absolute.
function(ct_pc_dir out dir)
  if(IS_ABSOLUTE "${dir}")
    set(${out} "${dir}" PARENT_SCOPE)
  else()
    set(${out} "\${prefix}/${dir}" PARENT_SCOPE)
  endif()
endfunction()

# ct_install_package(): the package files; call once, after every library.
function(ct_install_package)
  get_property(CT_PACKAGE_COMPONENTS GLOBAL PROPERTY CT_COMPONENTS)
  configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/canceltokenConfig.cmake.in
    ${PROJECT_BINARY_DIR}/cmake/canceltokenConfig.cmake
    INSTALL_DESTINATION ${CT_CMAKE_DIR})
  write_basic_package_version_file(
    ${PROJECT_BINARY_DIR}/cmake/canceltokenConfigVersion.cmake
    VERSION ${PROJECT_VERSION}
    # 0.x: a minor release may break the API, so 0.2 accepts 0.2.x only.
    COMPATIBILITY SameMinorVersion)
  install(FILES ${PROJECT_BINARY_DIR}/cmake/canceltokenConfig.cmake
    ${PROJECT_BINARY_DIR}/cmake/canceltokenConfigVersion.cmake
    DESTINATION ${CT_CMAKE_DIR})
endfunction()
