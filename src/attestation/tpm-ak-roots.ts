/**
 * Pinned roots for TPM attestation keys (DESIGN.md "Attested TLS", document `tpm`). An AK counts
 * only when a root here vouches for it: its certificate chains to a pinned CA (tpm-ak-cert.ts), or
 * an Azure HCL report vouches for it (tpm-hcl.ts, rooted in AMD's ARKs). The intermediates are
 * shipped so that a document carrying only the AK certificate (as read from a GCE vTPM's NV) still
 * chains; they are not trusted on their own: every chain must end in a pinned root.
 */

/** AKRoot is a pinned CA for AK certificates: a name for verdicts and its certificate (PEM). */
export interface AKRoot {
  name: string;
  pem: string;
  /** test marks a root whose private key is public (the simulated TPM's): only with tpm.allowTestRoot. */
  test: boolean;
}

/**
 * GOOGLE_EK_AK_ROOT_PEM is Google's EK/AK CA for Compute Engine Shielded VM vTPMs
 * ("tpm_ek_v1_cloud_host_root-signer-0-2018-04-06", RSA-4096, valid to 2118), published by Google
 * and captured in ../shared/evidence/tpm/gce-cos85/tpm_ek_root_1.cer.
 * sha256 Fingerprint=9B:D5:28:5F:8F:B1:85:02:A7:94:7E:62:1F:FD:47:02:66:F4:9F:CD:3B:73:E1:9A:19:0F:69:0A:D3:2A:7C:AF
 */
export const GOOGLE_EK_AK_ROOT_PEM = `-----BEGIN CERTIFICATE-----
MIIGfzCCBGegAwIBAgIQbw4ksY2+TlOMT5bDqCZawTANBgkqhkiG9w0BAQsFADCB
vjELMAkGA1UEBhMCVVMxEzARBgNVBAgTCkNhbGlmb3JuaWExFjAUBgNVBAcTDU1v
dW50YWluIFZpZXcxEzARBgNVBAoTCkdvb2dsZSBMTEMxDjAMBgNVBAsTBUNsb3Vk
MV0wWwYDVQQDDFR0cG1fZWtfdjFfY2xvdWRfaG9zdF9yb290LXNpZ25lci0wLTIw
MTgtMDQtMDZUMTA6NTg6MjYtMDc6MDAgSzoxLCAxOlB3MDAzSHNGWU80OjA6MTgw
IBcNMTgwNDA2MTc1ODI2WhgPMjExODA0MDYxODU4MjZaMIG+MQswCQYDVQQGEwJV
UzETMBEGA1UECBMKQ2FsaWZvcm5pYTEWMBQGA1UEBxMNTW91bnRhaW4gVmlldzET
MBEGA1UEChMKR29vZ2xlIExMQzEOMAwGA1UECxMFQ2xvdWQxXTBbBgNVBAMMVHRw
bV9la192MV9jbG91ZF9ob3N0X3Jvb3Qtc2lnbmVyLTAtMjAxOC0wNC0wNlQxMDo1
ODoyNi0wNzowMCBLOjEsIDE6UHcwMDNIc0ZZTzQ6MDoxODCCAiIwDQYJKoZIhvcN
AQEBBQADggIPADCCAgoCggIBAPvCO6TuV/jpJ4auYVo+9DKtdsC7EP5pXtyXwvbn
Cj2kT+8JPGb++tOJylihDSO2BNrtqVukkiV8dXYY0MQNufPinSnBZP7s1RXN4F99
k0tSI3e5TI2DwRFBV0jcu7rYZlzx3mO1ltNp/9UVA3zxLz663SPnoBBUUNlXnY90
JudOLfwXNP68KiCt/YIG7XrIRMY8iXNFrTS9BIlaLb+LIgmh29FN/YcQsXsAyum8
35FoULcDLqzrTjA+3rfRvQLwrq5QsJcEVuZYVRQS5td4RbRDz4GLQzHtRT0DSe89
aFAndaK8h4i/WLDoOI8SJ8B8m+VvOWDYnx/7qP6NsCnicVg7BQzYqAtlTTHUzi5N
d2p7Hc3FbbqYU74EdNTtFAwDsI95N0f+LC3wRK1xvGgaRSdnJeklhNVsdO00TDkm
AVdkkK+o7Pij2Ss2ywW9uRH5gnosnfswiWxAe9LvwJfBr4MNtha7evAwcvqkRvBJ
Fgd+AVugOuwOCC3rHFEquaoUWpNrvSBFMVooWgs0fMMcStYYj+vRd9aNDtgHsbgS
QvCFDmo91lcqRFcwYqDf8JmQwZO9yYOzjb/73MBsxRzuXpeQ9/L/SrIgL3zS7LLT
ybbQ3LJO592vz+sEk6/P/IOZSGPSh5NLVLSzjHfUuMR60hJ8zGo34QHJ/p1m6aHf
k52hAgMBAAGjdTBzMA4GA1UdDwEB/wQEAwIBhjAQBgNVHSUECTAHBgVngQUIATAP
BgNVHRMBAf8EBTADAQH/MB0GA1UdDgQWBBRl9OTmqvb9WtKInKhTVfcAjgj3pTAf
BgNVHSMEGDAWgBRl9OTmqvb9WtKInKhTVfcAjgj3pTANBgkqhkiG9w0BAQsFAAOC
AgEAJY6404gcN0hetPP/wdmL8fullQHfro3Jw5V311MFlkFEHpHS0+Bhg+Brt2J3
D9CVpsAhmU5Wy8CrdZ25dh8vRp27Ki5zaq3VWnyQSt0zjIGwez7WMbq4ky5SfMlk
mM5XvE1Boi99P6K4Qi2pJdU1JA4yYi6aiTz6A7iG7df769VokOD1Q4LIccD5MLUy
s+ptnbn30e1VmteBrHagrYUpedUUTzBo2050DoQLPTuGRBsQBnBkMD2N+yrj6Nov
4YufKPQUklu3PtLxdjZMa3U7Yd+Aw2WJJgD4xu0OH4SYfnnguaSX20njyi8tXNxk
helXGMQt85YCuoYE5nBMDLQ0M0jsz0abUHjYavlHsVTxwPNWxUFONI3+tDdy9ZWX
whYDRg/C+z7IvcrO9hcnghmJ7a1lX1oTHCah9bjTqz5w+cccx/nXHXpMglcACXJX
E7LlvO3VeStT+57cPuIfpRO7dRbce1O8qfnGH4Sk0LNmJai6OfFU/5499lvPdWbw
ChdLwaTFu/2Hs/Tq4bXvi9nHk0WSIQbPuUsFACRUf1U+NhyF7Ly6vWkI2cV3fI2w
N1gQ2YgOiESSNE50dof8LyJ6RO97aQqAkW0Qeqj7xfL2+U6qlCQNNp4gSbBegysr
cGNZKz/iBmmWoNvicw9mpPQqHnLv60IvRumxby/n617o/jU=
-----END CERTIFICATE-----
`;

/**
 * GOOGLE_EK_AK_INTERMEDIATE_2_PEM is the intermediate that signs GCE AK certificates
 * ("tpm_ek_v1_cloud_host-signer-0-2020-10-22", CA pathlen 0, issued by the root above).
 */
export const GOOGLE_EK_AK_INTERMEDIATE_2_PEM = `-----BEGIN CERTIFICATE-----
MIIGFDCCA/ygAwIBAgIQKGFud4l+Tma/3sf58QMTrDANBgkqhkiG9w0BAQsFADCB
vjELMAkGA1UEBhMCVVMxEzARBgNVBAgTCkNhbGlmb3JuaWExFjAUBgNVBAcTDU1v
dW50YWluIFZpZXcxEzARBgNVBAoTCkdvb2dsZSBMTEMxDjAMBgNVBAsTBUNsb3Vk
MV0wWwYDVQQDDFR0cG1fZWtfdjFfY2xvdWRfaG9zdF9yb290LXNpZ25lci0wLTIw
MTgtMDQtMDZUMTA6NTg6MjYtMDc6MDAgSzoxLCAxOlB3MDAzSHNGWU80OjA6MTgw
IBcNMjAxMDIyMjEwMjA4WhgPMjEyMDEwMjIyMTAyMDhaMIG5MQswCQYDVQQGEwJV
UzETMBEGA1UECBMKQ2FsaWZvcm5pYTEWMBQGA1UEBxMNTW91bnRhaW4gVmlldzET
MBEGA1UEChMKR29vZ2xlIExMQzEOMAwGA1UECxMFQ2xvdWQxWDBWBgNVBAMMT3Rw
bV9la192MV9jbG91ZF9ob3N0LXNpZ25lci0wLTIwMjAtMTAtMjJUMTQ6MDI6MDgt
MDc6MDAgSzoxLCAyOkhCTnBBM1RQQWJNOjA6MTgwggEiMA0GCSqGSIb3DQEBAQUA
A4IBDwAwggEKAoIBAQC04DIsQSkrbQCB4/7EV2BDEXZzBBBUVDaF/yuDzxzdMNux
kdNbB/cSbKbSc4+gI+4NLIn/qZA37KzWAd8PSviF2zFgC+ZF4m4wr7J5830n4OkA
BqfdtP368ROI1b5Ue1avugNfeHUI2Tz1YIflDlXlnotNMT4O4SIMug9sfBFjnwIN
bivDu3gUP803vfXDCsTcndKA7WgN5jXDEAfdP1EZtugODsCxSjvcveKr30ORmCg7
76N+bt+Q+YQeQxFxWF6eIDG8u4BPk9p/mXXIfqQMd+WprWEt1pdvQFURoieAN2hx
EkoL959oFiva69vAjTU8HqaAb16uWhWSQayH0lXbAgMBAAGjggENMIIBCTAOBgNV
HQ8BAf8EBAMCAQYwEAYDVR0lBAkwBwYFZ4EFCAEwEgYDVR0TAQH/BAgwBgEB/wIB
ADAdBgNVHQ4EFgQUE81xuliyClGjKA5luZaeux0NEZMwHwYDVR0jBBgwFoAUZfTk
5qr2/VrSiJyoU1X3AI4I96UwTQYIKwYBBQUHAQEEQTA/MD0GCCsGAQUFBzAChjFo
dHRwOi8vcGtpLmdvb2cvY2xvdWRfaW50ZWdyaXR5L3RwbV9la19yb290XzEuY3J0
MEIGA1UdHwQ7MDkwN6A1oDOGMWh0dHA6Ly9wa2kuZ29vZy9jbG91ZF9pbnRlZ3Jp
dHkvdHBtX2VrX3Jvb3RfMS5jcmwwDQYJKoZIhvcNAQELBQADggIBAJDz1ozb36Gh
Nkcflz77qNXW/I6TqBN7VUMJy5zVXxIxLHDayU6mJGizriQkncDmnWY8/NUgroXK
IyURBsB2sNI41KcQFi+ScYRGKuGkiLt/0huxA0njCLIOyAcDN6oaph8Eo7rCL5Md
hA9uMxnHMgWVWjnpgYKVMui6lakEcpek2ngNMpSHe7VxmM2L/56ucQblvIma00AN
C6NAi+QOFuyoqrmZhXjj0w/p2yO5W38jp/tcPX38FZ6uZpD3iYAfBgRc4yrvUF4J
2UUlF3xBL0uQI3G96uh0OcBzAA4KFMRBfsZR4rfgbAhCRq/LZ0NAIhb9ndOkHYl0
/6TyQFqSt77v8E+w2mwzAsYp/jAAu7IF8s0WMcZPTBKgMk9iRoVRAU7r6sJcqfhu
mx7o8H57k+90bpAZjZsBHLj/OWFQDK6TBrxL9kXtZ8eL6c+M7o5Mx3mCzqjjp5fE
e/K5Dr2NhzcU31TTGdRz/2t7eFMjP1ylsNCXSHNB7yoA1oUcWKo6nuitUPxLjiiv
j6cvhMPsJLRpMJQN78k2VF7osri73l1Df22ELkWz6tvvb6O6Dh3fWCeKP713B/+J
Rv4XJ10wPL1StRDE8vl/mi+hyc/c7QGeuRoYdmKu5xti9IxtaxZaZJqCXm4C7BdS
6w7bUa6T6smyKpXcL4iX/vx2v7Ym67AG
-----END CERTIFICATE-----
`;

/** GOOGLE_AK_ROOTS are the pinned production roots for AK certificates. */
export const GOOGLE_AK_ROOTS: readonly AKRoot[] = Object.freeze([
  { name: "Google EK/AK CA (tpm_ek_v1_cloud_host_root-signer-0-2018-04-06)", pem: GOOGLE_EK_AK_ROOT_PEM, test: false },
]);

/** SHIPPED_AK_INTERMEDIATES are intermediates tried after those a document carries. */
export const SHIPPED_AK_INTERMEDIATES: readonly string[] = Object.freeze([GOOGLE_EK_AK_INTERMEDIATE_2_PEM]);
