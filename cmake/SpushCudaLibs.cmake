# cuDNN and NCCL discovery (optional; nothing in spush links them yet). Each is looked for, in
# the order of SPUSH_CUDA_LIBS_SEARCH (default: root;toolkit;system;wheel), as a header + library
# pair from ONE place:
#   root     SPUSH_CUDNN_ROOT / SPUSH_NCCL_ROOT (include/, lib/, lib64/), when set
#   toolkit  the CUDA toolkit CMake found (CUDAToolkit_INCLUDE_DIRS, CUDAToolkit_LIBRARY_DIR)
#   system   CMake's default search (CMAKE_PREFIX_PATH, /usr, /usr/local, <prefix>/lib/<arch>)
#   wheel    the NVIDIA Python wheels of the Python 3 interpreter (Python3_EXECUTABLE, else
#            python3 on PATH): site-packages/nvidia/cudnn and nvidia/nccl, whose libraries
#            carry only versioned names (libcudnn.so.9, libnccl.so.2)
# Results, for later use:
#   SPUSH_HAVE_CUDNN / SPUSH_HAVE_NCCL    ON or OFF (OFF also without CUDA or when disabled)
#   spush::cudnn / spush::nccl            imported shared libraries with their include folder
#   SPUSH_<X>_VERSION, SPUSH_<X>_INCLUDE_DIR, SPUSH_<X>_LIBRARY, SPUSH_<X>_ORIGIN (X = CUDNN, NCCL)
#   SPUSH_<X>_SUMMARY                     the configure summary's text
option(SPUSH_ENABLE_CUDNN "Look for cuDNN (optional)" ON)
option(SPUSH_ENABLE_NCCL "Look for NCCL (optional)" ON)
set(SPUSH_CUDNN_ROOT "" CACHE PATH "cuDNN prefix to try first (include/, lib/ or lib64/)")
set(SPUSH_NCCL_ROOT "" CACHE PATH "NCCL prefix to try first (include/, lib/ or lib64/)")
set(SPUSH_CUDA_LIBS_SEARCH "root;toolkit;system;wheel" CACHE STRING
    "Where to look for cuDNN and NCCL, in order (root, toolkit, system, wheel)")

# The folder of an NVIDIA wheel's Python package (e.g. nvidia.cudnn), and the wheel's
# distribution names and versions (e.g. "nvidia-cudnn-cu12 9.1.0.70"), or empty.
function(_spush_wheel_dir module dist_prefix out_dir out_dists)
  set(${out_dir} "" PARENT_SCOPE)
  set(${out_dists} "" PARENT_SCOPE)
  set(python "${Python3_EXECUTABLE}")
  if(NOT python)
    find_program(SPUSH_PYTHON3 NAMES python3)
    set(python "${SPUSH_PYTHON3}")
  endif()
  if(NOT python)
    return()
  endif()
  execute_process(
    COMMAND "${python}" -c "
import importlib, importlib.metadata as md
m = importlib.import_module('${module}')
print(list(m.__path__)[0])
for d in md.distributions():
    n = d.metadata['Name'] or ''
    if n.lower().startswith('${dist_prefix}'):
        print(n, d.version)
"
    RESULT_VARIABLE rc OUTPUT_VARIABLE text ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0 OR NOT text)
    return()
  endif()
  string(REPLACE "\n" ";" lines "${text}")
  list(POP_FRONT lines dir)
  string(REPLACE ";" ", " dists "${lines}")
  set(${out_dir} "${dir}" PARENT_SCOPE)
  set(${out_dists} "${dists}" PARENT_SCOPE)
endfunction()

# spush_find_cuda_library(<X> HEADER <file> VERSION_HEADERS <files> NAMES <library names>
#                         VERSION_MACROS <major> <minor> <patch> MODULE <python module>
#                         DIST <wheel name prefix> TARGET <imported target>)
function(spush_find_cuda_library X)
  cmake_parse_arguments(A "" "HEADER;MODULE;DIST;TARGET"
                        "VERSION_HEADERS;NAMES;VERSION_MACROS" ${ARGN})
  set(SPUSH_HAVE_${X} OFF PARENT_SCOPE)
  if(NOT SPUSH_HAVE_CUDA)
    set(SPUSH_${X}_SUMMARY "OFF (no CUDA in this build)" PARENT_SCOPE)
    return()
  endif()
  if(NOT SPUSH_ENABLE_${X})
    set(SPUSH_${X}_SUMMARY "OFF (SPUSH_ENABLE_${X}=OFF)" PARENT_SCOPE)
    return()
  endif()
  set(suffixes lib lib64 lib/${CMAKE_LIBRARY_ARCHITECTURE})
  set(tried "")
  foreach(where IN LISTS SPUSH_CUDA_LIBS_SEARCH)
    set(inc "")
    set(lib "")
    set(note "")
    unset(_spush_inc)
    unset(_spush_lib)
    if(where STREQUAL "root")
      if(NOT SPUSH_${X}_ROOT)
        continue()
      endif()
      find_path(_spush_inc ${A_HEADER} PATHS "${SPUSH_${X}_ROOT}" PATH_SUFFIXES include
                NO_DEFAULT_PATH NO_CACHE)
      find_library(_spush_lib NAMES ${A_NAMES} PATHS "${SPUSH_${X}_ROOT}" PATH_SUFFIXES ${suffixes}
                   NO_DEFAULT_PATH NO_CACHE)
    elseif(where STREQUAL "toolkit")
      find_path(_spush_inc ${A_HEADER} PATHS ${CUDAToolkit_INCLUDE_DIRS} NO_DEFAULT_PATH NO_CACHE)
      find_library(_spush_lib NAMES ${A_NAMES} PATHS ${CUDAToolkit_LIBRARY_DIR}
                   "${CUDAToolkit_LIBRARY_ROOT}" PATH_SUFFIXES "" ${suffixes}
                   NO_DEFAULT_PATH NO_CACHE)
    elseif(where STREQUAL "system")
      find_path(_spush_inc ${A_HEADER} NO_CACHE)
      find_library(_spush_lib NAMES ${A_NAMES} NO_CACHE)
    elseif(where STREQUAL "wheel")
      _spush_wheel_dir(${A_MODULE} ${A_DIST} dir dists)
      if(NOT dir)
        list(APPEND tried "wheel (no ${A_MODULE} module)")
        continue()
      endif()
      find_path(_spush_inc ${A_HEADER} PATHS "${dir}" PATH_SUFFIXES include NO_DEFAULT_PATH
                NO_CACHE)
      find_library(_spush_lib NAMES ${A_NAMES} PATHS "${dir}" PATH_SUFFIXES lib NO_DEFAULT_PATH
                   NO_CACHE)
      set(note "${dists}")
      # A wheel for another CUDA major (nvidia-cudnn-cu12 beside a CUDA 13 toolkit) is reported.
      if(dists MATCHES "-cu([0-9]+)" AND CUDAToolkit_VERSION_MAJOR AND
         NOT CMAKE_MATCH_1 EQUAL CUDAToolkit_VERSION_MAJOR)
        string(APPEND note "; built for CUDA ${CMAKE_MATCH_1}, the toolkit is CUDA "
                           "${CUDAToolkit_VERSION_MAJOR}")
      endif()
    else()
      message(FATAL_ERROR "SPUSH_CUDA_LIBS_SEARCH: unknown place '${where}' (expected root, "
                          "toolkit, system or wheel)")
    endif()
    if(_spush_inc AND _spush_lib)
      string(REGEX REPLACE "(.)/+$" "\\1" inc "${_spush_inc}")
      set(lib "${_spush_lib}")
      set(found_in "${where}")  # foreach restores `where` when the loop ends
      break()
    endif()
    list(APPEND tried "${where}")
  endforeach()
  if(NOT inc)
    string(REPLACE ";" ", " tried "${tried}")
    set(SPUSH_${X}_SUMMARY "OFF (not found; looked in: ${tried})" PARENT_SCOPE)
    return()
  endif()
  # Version from the header's macros (cudnn_version.h, nccl.h).
  set(version "")
  foreach(h IN LISTS A_VERSION_HEADERS)
    if(NOT version AND EXISTS "${inc}/${h}")
      set(parts "")
      foreach(macro IN LISTS A_VERSION_MACROS)
        file(STRINGS "${inc}/${h}" line REGEX "#define[ \t]+${macro}[ \t]+[0-9]+")
        if(line MATCHES "${macro}[ \t]+([0-9]+)")
          list(APPEND parts "${CMAKE_MATCH_1}")
        endif()
      endforeach()
      list(LENGTH parts n)
      if(n EQUAL 3)
        string(REPLACE ";" "." version "${parts}")
      endif()
    endif()
  endforeach()
  if(NOT TARGET ${A_TARGET})
    add_library(${A_TARGET} SHARED IMPORTED GLOBAL)
  endif()
  set_target_properties(${A_TARGET} PROPERTIES IMPORTED_LOCATION "${lib}"
                                               INTERFACE_INCLUDE_DIRECTORIES "${inc}")
  # Not a system include folder: -I puts it ahead of the toolkit's (-isystem through
  # CUDA::cudart), so a wheel's nccl.h wins over a toolkit's own copy.
  if(CMAKE_VERSION VERSION_LESS 3.25)
    set_property(TARGET ${A_TARGET} PROPERTY IMPORTED_NO_SYSTEM ON)
  else()
    set_property(TARGET ${A_TARGET} PROPERTY SYSTEM OFF)
  endif()
  if(TARGET CUDA::cudart)
    set_property(TARGET ${A_TARGET} PROPERTY INTERFACE_LINK_LIBRARIES CUDA::cudart)
  endif()
  set(summary "ON ${version} from ${found_in}: ${lib}")
  if(NOT found_in STREQUAL "wheel")
    set(summary "${summary}, headers ${inc}")
  endif()
  if(note)
    set(summary "${summary} (${note})")
  endif()
  set(SPUSH_HAVE_${X} ON PARENT_SCOPE)
  set(SPUSH_${X}_VERSION "${version}" PARENT_SCOPE)
  set(SPUSH_${X}_INCLUDE_DIR "${inc}" PARENT_SCOPE)
  set(SPUSH_${X}_LIBRARY "${lib}" PARENT_SCOPE)
  set(SPUSH_${X}_ORIGIN "${found_in}" PARENT_SCOPE)
  set(SPUSH_${X}_SUMMARY "${summary}" PARENT_SCOPE)
endfunction()

spush_find_cuda_library(CUDNN HEADER cudnn_version.h VERSION_HEADERS cudnn_version.h cudnn.h
                        NAMES cudnn libcudnn.so.9 libcudnn.so.8
                        VERSION_MACROS CUDNN_MAJOR CUDNN_MINOR CUDNN_PATCHLEVEL
                        MODULE nvidia.cudnn DIST nvidia-cudnn TARGET spush::cudnn)
spush_find_cuda_library(NCCL HEADER nccl.h VERSION_HEADERS nccl.h NAMES nccl libnccl.so.2
                        VERSION_MACROS NCCL_MAJOR NCCL_MINOR NCCL_PATCH
                        MODULE nvidia.nccl DIST nvidia-nccl TARGET spush::nccl)
