# Build: node-gyp rebuild --nodedir=/usr   (headers from /usr/include/node; nothing is downloaded)
{
  "targets": [
    {
      "target_name": "attested_mesh_native",
      "sources": ["src/addon.cc", "src/errors.cc", "src/tpm.cc", "src/tpm-nv.cc", "src/tpm-seal.cc", "src/snp.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-fexceptions", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
      "libraries": ["-ltss2-esys", "-ltss2-tctildr", "-ltss2-mu", "-ltss2-rc"]
    }
  ]
}
