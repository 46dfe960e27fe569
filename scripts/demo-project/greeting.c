#include "greeting.h"

const char *greeting(void) {
  return "Hello from a container build made by autobuilder";
}
