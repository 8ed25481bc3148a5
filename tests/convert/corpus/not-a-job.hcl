# A valid HCL file that is not a Nomad job (a client configuration).
client {
  enabled = true
  options {
    "rkt.volumes.enabled" = "false"
  }
}
